"""A feed's fast path: the next ``seq`` is the event's shared text; anything else is left to
``render`` (which may read the store)."""

from __future__ import annotations

import json
from typing import Any, cast

from reelflow_common.messages import ClipUpdated
from reelflow_common.store import ProjectStore
from reelflow_notifier.feed import Feed
from reelflow_notifier.replays import Replays


def event(seq: int) -> ClipUpdated:
    return ClipUpdated.model_validate(
        {
            "project_id": "p",
            "tenant_id": "t",
            "seq": seq,
            "clip": {"task_uuid": "c1", "scene_index": 0, "status": "processing"},
            "counts": {"total_clips": 1, "completed": 0, "pending": 1, "failed": 0},
        }
    )


def feed(last_seq: int | None) -> Feed:
    # No store: the fast path must not read it (an attribute error would say it did).
    store = cast(ProjectStore, cast(Any, None))
    found = Feed("p", tenant_id="t", projects=store, replays=Replays(store))
    found.last_seq = last_seq
    return found


def test_the_next_seq_is_sent_as_is_and_advances_the_feed() -> None:
    watching = feed(last_seq=4)

    texts = watching.next_texts([event(5)])

    assert texts is not None
    assert [json.loads(text)["seq"] for text in texts] == [5]
    assert watching.last_seq == 5


def test_a_burst_of_the_next_seqs_is_sent_in_order() -> None:
    watching = feed(last_seq=4)

    texts = watching.next_texts([event(5), event(6), event(7)])

    assert texts is not None
    assert [json.loads(text)["seq"] for text in texts] == [5, 6, 7]
    assert watching.last_seq == 7


def test_a_duplicate_a_gap_or_a_watch_not_started_is_left_to_render() -> None:
    assert feed(last_seq=5).next_texts([event(5)]) is None  # duplicate
    assert feed(last_seq=5).next_texts([event(7)]) is None  # gap: the store fills it
    assert feed(last_seq=None).next_texts([event(1)]) is None  # its snapshot is still queued


def test_a_burst_with_a_gap_or_a_duplicate_is_left_to_render_whole() -> None:
    for seqs in ([6, 8], [6, 6], [5, 6]):
        watching = feed(last_seq=5)

        assert watching.next_texts([event(seq) for seq in seqs]) is None
        assert watching.last_seq == 5  # nothing sent, nothing skipped
