"""Changes of several clips of one project merged into one update, pure.

What must hold: the merged update leaves the document exactly as the writes
applied one after the other would, events and their ``seq`` included; if one
write's guard no longer holds the merged one matches nothing (each then goes
alone); and only changes of one clip each, of distinct clips of one project,
are ever merged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from reelflow_common.store import TaskFailed, TaskSucceeded
from reelflow_common.store.documents import project_from_document
from reelflow_common.store.eventlog import materialize
from reelflow_common.store.together import clip_of, merged
from reelflow_common.store.transitions import cancellation, chainleases, clipmoves
from reelflow_common.store.transitions.write import Write
from tests.unit.mongo_like import find_one_and_update
from tests.unit.test_store_transitions import (
    LEASE,
    LOG,
    T0,
    finish,
    head,
    new_doc,
    step,
    to_terminal,
)


def processing(scene: int, *, minutes: int = 0) -> Write:
    now = T0 + timedelta(minutes=minutes)
    return clipmoves.to_processing(
        "p1", scene, f"t{scene}", token=f"k{scene}", now=now, lease_until=now + LEASE,
        correlation_id=f"c{scene}", log_size=LOG,
    )  # fmt: skip


def one_by_one(doc: dict[str, Any], writes: list[Write]) -> dict[str, Any]:
    for write in writes:
        doc = step(doc, write)
    return doc


def test_processing_of_three_clips_merged_is_each_applied_in_turn() -> None:
    doc = new_doc(4)
    writes = [processing(2, minutes=1), processing(0, minutes=2), processing(3, minutes=3)]

    together = merged(writes)

    assert together is not None
    assert together.events == 3
    after = step(doc, together)
    assert after == one_by_one(doc, writes)
    events = materialize(head(after), after["events"])
    assert [(e.seq, e.clip.scene_index, e.correlation_id) for e in events] == [  # type: ignore[union-attr]
        (1, 2, "c2"),
        (2, 0, "c0"),
        (3, 3, "c3"),
    ]
    assert after["updated_at"] == T0 + timedelta(minutes=3)


def test_ends_merged_move_the_counts_and_the_cost_of_each() -> None:
    doc = one_by_one(new_doc(3), [processing(0), processing(1), processing(2)])
    video = TaskSucceeded(video_url="https://v/1.mp4", video_uuid="v1", cost=0.25)
    writes = [
        to_terminal(1, video),
        to_terminal(0, TaskFailed(code="contentPolicyViolation", message="no")),
        to_terminal(2, video.model_copy(update={"cost": None})),
    ]

    together = merged(writes)

    assert together is not None
    after = step(doc, together)
    assert after == one_by_one(doc, writes)
    assert after["counts"] | {"total_clips": 3} == {
        "total_clips": 3, "pending": 0, "completed": 2, "failed": 1, "cancelled": 0,
    }  # fmt: skip
    assert after["cost"] == {"usd": 0.25, "known": 1, "unknown": 1}
    # The finish is a change of the project, not of a clip: never merged.
    assert clip_of(finish(after)) is None


def test_a_cancel_and_a_progress_merged_are_each_applied_in_turn() -> None:
    doc = one_by_one(new_doc(3), [processing(0), processing(1)])
    later = T0 + timedelta(minutes=5)
    clip = project_from_document(doc).clips[1]
    writes = [
        clipmoves.progress(
            "p1", 0, "t0", 40, submitted_at=T0, now=T0 + timedelta(minutes=4),
            correlation_id=None, log_size=LOG,
        ),
        # a processing clip's cancel: its lease moves to its attempt, ``$min`` attempts_due_at
        cancellation.cancel("p1", "tenant-a", clip, now=later, correlation_id="c", log_size=LOG),
        cancellation.cancel(
            "p1", "tenant-a", project_from_document(doc).clips[2], now=later,
            correlation_id="c", log_size=LOG,
        ),
    ]  # fmt: skip

    together = merged(writes)

    assert together is not None
    assert together.filter["tenant_id"] == "tenant-a"
    after = step(doc, together)
    assert after == one_by_one(doc, writes)
    assert after["clips"]["1"]["attempts"]["t1"]["lease"]["token"] == "k1"


def test_one_guard_that_no_longer_holds_stops_the_merged_write() -> None:
    doc = one_by_one(new_doc(3), [processing(0), processing(1)])
    doc = step(doc, to_terminal(1, TaskFailed(code="x", message="late")))
    video = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.5)
    # Clip 1 ended already: its duplicate end matches nothing, alone or merged.
    writes = [to_terminal(0, video), to_terminal(1, video)]

    together = merged(writes)

    assert together is not None
    assert find_one_and_update(doc, together.filter, together.update) is None
    assert find_one_and_update(doc, writes[0].filter, writes[0].update) is not None


def test_only_changes_of_distinct_clips_of_one_project_merge() -> None:
    video = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.5)
    other_project = clipmoves.to_terminal(
        "p2", 1, "t1", video, now=T0, correlation_id=None, log_size=LOG
    )

    assert clip_of(processing(3)) == "clips.3"
    assert merged([processing(0)]) is None  # nothing to merge
    assert merged([processing(0), to_terminal(0, video)]) is None  # one clip twice
    assert merged([to_terminal(0, video), other_project]) is None
    assert merged([processing(0), finish(new_doc(2))]) is None
    renewal = chainleases.renew_lease("p1", 0, token="k0", until_was=T0, until=T0 + LEASE)
    assert clip_of(renewal) == "clips.0"  # no events: merges, and pushes none
    assert merged([renewal, processing(1)]) is not None
