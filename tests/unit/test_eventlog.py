"""The event log, pure: stored events numbered by position, counts rebuilt from the deltas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reelflow_common.domain import Bucket, ClipStatus, CostTotals, Counts, ProjectStatus
from reelflow_common.messages import AttemptView, ClipUpdated, ClipView, ProjectFinished
from reelflow_common.store.eventlog import (
    LogHead,
    StoredEvent,
    about_scene,
    attempt_event,
    clip_event,
    finish_event,
    materialize,
    message_id,
    packed,
    replay_after,
    unpacked,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def moved(scene: int, status: ClipStatus, from_bucket: Bucket, to_bucket: Bucket) -> dict[str, Any]:
    view = ClipView(task_uuid=f"t{scene}", scene_index=scene, status=status)
    return clip_event(
        view, from_bucket=from_bucket, to_bucket=to_bucket, occurred_at=T0, correlation_id=None
    )


#: two clips: both processing, one succeeds, one fails, the project finishes
LOG = [
    moved(0, ClipStatus.PROCESSING, "pending", "pending"),
    moved(1, ClipStatus.PROCESSING, "pending", "pending"),
    moved(1, ClipStatus.SUCCESS, "pending", "completed"),
    moved(0, ClipStatus.FAILED, "pending", "failed"),
    finish_event(ProjectStatus.PARTIAL, occurred_at=T0, correlation_id="req-9"),
]
FINAL = Counts(total_clips=2, completed=1, pending=0, failed=1)
HEAD = LogHead("p1", "tenant-a", 5, FINAL, correlation_id="req-1")


def test_events_are_numbered_by_position_and_counts_rebuilt_backwards() -> None:
    events = materialize(HEAD, LOG)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [(e.counts.completed, e.counts.pending, e.counts.failed) for e in events] == [
        (0, 2, 0),
        (0, 2, 0),
        (1, 1, 0),
        (1, 0, 1),
        (1, 0, 1),
    ]
    finished = events[-1]
    assert isinstance(finished, ProjectFinished)
    assert (finished.status, finished.correlation_id) == (ProjectStatus.PARTIAL, "req-9")
    first = events[0]
    assert isinstance(first, ClipUpdated)
    assert (first.project_id, first.tenant_id, first.correlation_id) == ("p1", "tenant-a", "req-1")


def test_a_log_that_was_capped_is_numbered_from_the_documents_seq() -> None:
    events = materialize(HEAD, LOG[-2:])

    assert [e.seq for e in events] == [4, 5]
    assert events[0].counts == FINAL


def test_a_writer_and_a_replay_build_the_same_messages() -> None:
    # The writer numbers its own events from the (seq, counts) its update returned;
    # a replay numbers the same events from a later read.
    mine = LOG[2:3]
    writer_head = LogHead(
        "p1", "tenant-a", 3, Counts(total_clips=2, completed=1, pending=1, failed=0), "req-1"
    )

    (written,) = materialize(writer_head, mine)

    assert materialize(HEAD, LOG)[2] == written
    assert written.message_id == message_id("p1", 3)


def test_replay_gives_what_follows_or_none_when_a_gap_would_be_hidden() -> None:
    capped = LOG[2:]  # seq 3..5 are left

    assert [e.seq for e in replay_after(HEAD, capped, 2) or []] == [3, 4, 5]
    assert [e.seq for e in replay_after(HEAD, capped, 4) or []] == [5]
    assert replay_after(HEAD, capped, 5) == []
    assert replay_after(HEAD, capped, 1) is None  # seq 2 has dropped out of the log
    assert replay_after(HEAD, capped, 6) is None  # a seq this project never had
    assert replay_after(HEAD, capped, -1) is None


def test_events_about_a_scene_include_the_project_finishes() -> None:
    events = materialize(HEAD, LOG)

    assert [e.seq for e in about_scene(events, 0)] == [1, 4, 5]
    assert [e.seq for e in about_scene(events, 1)] == [2, 3, 5]


def test_a_stored_clip_event_keeps_what_the_writer_knew() -> None:
    view = ClipView(task_uuid="t9", scene_index=3, status=ClipStatus.QUEUED)

    stored = clip_event(
        view,
        from_bucket="failed",
        to_bucket="pending",
        occurred_at=T0,
        correlation_id="req-2",
        replaces_task_uuid="t8",
    )

    assert stored == {
        "type": "clip.updated",
        "clip": {"task_uuid": "t9", "scene_index": 3, "status": "queued"},
        "delta": {"from": "failed", "to": "pending"},
        "occurred_at": T0,
        "replaces_task_uuid": "t8",
        "correlation_id": "req-2",
    }


def test_a_packed_log_and_one_written_as_subdocuments_read_the_same() -> None:
    packed_log = [packed(doc) for doc in LOG]
    assert all(isinstance(entry, bytes) for entry in packed_log)
    # Projects written before the log was packed hold subdocuments; a log may hold both.
    mixed: list[StoredEvent] = [*LOG[:2], *packed_log[2:]]

    assert materialize(HEAD, packed_log) == materialize(HEAD, LOG)
    assert materialize(HEAD, mixed) == materialize(HEAD, LOG)
    assert replay_after(HEAD, packed_log, 3) == replay_after(HEAD, LOG, 3)
    assert unpacked(packed_log[0])["occurred_at"] == T0  # an aware UTC datetime again


def test_each_event_says_the_projects_cost_after_it_rebuilt_backwards() -> None:
    # Three videos: one priced, one unpriced, an attempt's late one; a retry then takes that
    # late video (counted when it came: ``cost_counted``), and the project finishes.
    def success(scene: int, cost: float | None, **kwargs: Any) -> dict[str, Any]:
        view = ClipView(task_uuid=f"t{scene}", scene_index=scene, status="success", cost=cost)
        return clip_event(view, from_bucket="pending", to_bucket="completed", occurred_at=T0,
                          correlation_id=None, **kwargs)  # fmt: skip

    late = AttemptView(task_uuid="t7", status=ClipStatus.SUCCESS, cost=0.2)
    log = [
        success(0, 0.1),
        moved(1, ClipStatus.PROCESSING, "pending", "pending"),
        success(1, None),
        attempt_event(2, late, occurred_at=T0, correlation_id=None),
        success(2, 0.2, cost_counted=True),
        finish_event(ProjectStatus.COMPLETED, occurred_at=T0, correlation_id=None),
    ]
    # As the database adds them: 0.1 + 0.2 is 0.30000000000000004.
    final = CostTotals(usd=0.1 + 0.2, known=2, unknown=1)
    done = Counts(total_clips=3, completed=3, pending=0, failed=0)
    head = LogHead("p1", "tenant-a", 6, done, cost=final)

    events = materialize(head, log)

    assert [e.model_dump(mode="json")["cost"] for e in events] == [
        {"usd": 0.1, "known": 1, "unknown": 0},
        {"usd": 0.1, "known": 1, "unknown": 0},
        {"usd": 0.1, "known": 1, "unknown": 1},
        {"usd": 0.3, "known": 2, "unknown": 1},
        {"usd": 0.3, "known": 2, "unknown": 1},  # a video counted already
        {"usd": 0.3, "known": 2, "unknown": 1},
    ]
    assert events[-1].cost == CostTotals(usd=0.3, known=2, unknown=1)  # the document's, shown
    # A capped log, a replay: the same costs for the events left.
    assert [e.cost for e in materialize(head, log[3:])] == [e.cost for e in events[3:]]
    # A head read without the cost (a caller of the release before): no cost, never a wrong one.
    assert {e.cost for e in materialize(HEAD, LOG)} == {None}
