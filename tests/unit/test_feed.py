"""A feed's fast path: the next ``seq`` is the event's shared text; anything else is left to
``render`` (which may read the store)."""

from __future__ import annotations

import json
from typing import Any, cast

from reelflow_common.store import ProjectStore
from reelflow_notifier.feed import Feed
from reelflow_notifier.replays import Replays
from tests.builders import clip_updated


def feed(last_seq: int | None) -> Feed:
    # No store: the fast path must not read it (an attribute error would say it did).
    store = cast(ProjectStore, cast(Any, None))
    found = Feed("p1", tenant_id="t1", projects=store, replays=Replays(store))
    found.last_seq = last_seq
    return found


def test_the_next_seq_is_sent_as_is_and_advances_the_feed() -> None:
    watching = feed(last_seq=4)

    texts = watching.next_texts([clip_updated(5)])

    assert texts is not None
    assert [json.loads(text)["seq"] for text in texts] == [5]
    assert watching.last_seq == 5


def test_a_burst_of_the_next_seqs_is_sent_in_order() -> None:
    watching = feed(last_seq=4)

    texts = watching.next_texts([clip_updated(5), clip_updated(6), clip_updated(7)])

    assert texts is not None
    assert [json.loads(text)["seq"] for text in texts] == [5, 6, 7]
    assert watching.last_seq == 7


def test_a_duplicate_a_gap_or_a_watch_not_started_is_left_to_render() -> None:
    assert feed(last_seq=5).next_texts([clip_updated(5)]) is None  # duplicate
    assert feed(last_seq=5).next_texts([clip_updated(7)]) is None  # gap: the store fills it
    assert feed(last_seq=None).next_texts([clip_updated(1)]) is None  # its snapshot is still queued


def test_a_burst_with_a_gap_or_a_duplicate_is_left_to_render_whole() -> None:
    for seqs in ([6, 8], [6, 6], [5, 6]):
        watching = feed(last_seq=5)

        assert watching.next_texts([clip_updated(seq) for seq in seqs]) is None
        assert watching.last_seq == 5  # nothing sent, nothing skipped
