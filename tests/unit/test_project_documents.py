"""Project documents, the public status, cursors and the store's decisions, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import ClipUpdated, ClipView, ProjectFinished
from reelflow_common.store import InvalidCursor, NewClip, NewProject, Project
from reelflow_common.store.changes import NOT_TERMINAL, cancel_change, clip_change, retry_change
from reelflow_common.store.cursor import decode_cursor, encode_cursor
from reelflow_common.store.documents import (
    event_document,
    event_from_document,
    new_project_document,
    project_from_document,
)
from reelflow_common.store.eventlog import about_clip, replay_after
from reelflow_common.store.timefmt import rfc3339

T0 = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def project(scenes: int = 2) -> Project:
    new = NewProject(
        tenant_id="tenant-a",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[
            NewClip(prompt=f"scene {i}", duration=4, width=1280, height=720) for i in range(scenes)
        ],
        correlation_id="req-1",
    )
    doc = new_project_document(
        new, project_id="p1", task_uuids=[f"t{i}" for i in range(scenes)], now=T0
    )
    return project_from_document(doc)


def with_clip(base: Project, task_uuid: str, to: ClipStatus, **fields: object) -> Project:
    """``base`` after one clip moved to ``to``, as the store would read it back."""
    change = clip_change(base, task_uuid, allowed_from=list(ClipStatus), to=to, now=T1, **fields)
    assert change is not None
    clips = [
        clip.model_copy(update={"status": to, **fields}) if clip.task_uuid == task_uuid else clip
        for clip in base.clips
    ]
    counts = Counts(**change.set["counts"]) if "counts" in change.set else base.counts
    return base.model_copy(update={"clips": clips, "seq": change.new_seq, "counts": counts})


def test_a_new_project_document_reads_back_as_queued_clips_in_scene_order() -> None:
    read = project(3)

    assert read.status is ProjectStatus.GENERATING
    assert read.seq == 0
    assert read.counts == Counts(total_clips=3, completed=0, pending=3, failed=0)
    assert [(clip.task_uuid, clip.scene_index, clip.status) for clip in read.clips] == [
        ("t0", 0, ClipStatus.QUEUED),
        ("t1", 1, ClipStatus.QUEUED),
        ("t2", 2, ClipStatus.QUEUED),
    ]
    assert read.clips[1].model == "google:3@3"
    assert read.clips[1].prompt == "scene 1"


def test_public_status_has_the_seed_fields_first_then_reelflow_fields() -> None:
    done = with_clip(
        project(),
        "t0",
        ClipStatus.SUCCESS,
        video_url="https://v/0.mp4",
        cost=0.12,
        submitted_at=T0,
        completed_at=T1,
    )

    status = done.public_status()

    assert list(status) == [
        "success", "project_id", "total_clips", "completed", "pending", "failed",
        "all_complete", "clips", "status", "title", "results", "created_at", "updated_at",
    ]  # fmt: skip
    assert status["clips"] == {"t0": "https://v/0.mp4", "t1": "pending"}
    assert (status["completed"], status["pending"], status["all_complete"]) == (1, 1, False)
    assert status["results"] == [
        {
            "task_uuid": "t0",
            "scene_index": 0,
            "status": "success",
            "video_url": "https://v/0.mp4",
            "cost": 0.12,
            "submitted_at": "2026-11-24T12:00:00.123000Z",
            "completed_at": "2026-11-24T12:01:00.123000Z",
        },
        {"task_uuid": "t1", "scene_index": 1, "status": "queued"},
    ]
    assert status["created_at"] == "2026-11-24T12:00:00.123000Z"
    assert "results" not in done.public_status(include_results=False)


def test_public_status_shows_cancelled_clips_as_failed_as_the_seed_would() -> None:
    base = project()
    change = cancel_change(base, now=T1)
    assert change is not None
    cancelled = base.model_copy(
        update={
            "clips": [c.model_copy(update={"status": ClipStatus.CANCELLED}) for c in base.clips],
            "counts": Counts(**change.set["counts"]),
        }
    )

    status = cancelled.public_status()

    assert status["clips"] == {"t0": "failed", "t1": "failed"}
    assert (status["failed"], status["pending"], status["all_complete"]) == (2, 0, True)
    assert [item["status"] for item in status["results"]] == ["cancelled", "cancelled"]


def test_timestamps_are_written_as_pydantic_writes_the_events() -> None:
    written = TypeAdapter(datetime).dump_python(T0, mode="json")

    assert rfc3339(T0) == written
    assert rfc3339(T0.replace(microsecond=0)) == "2026-11-24T12:00:00Z"


def test_events_round_trip_through_their_stored_form() -> None:
    change = clip_change(
        project(1), "t0", allowed_from=NOT_TERMINAL, to=ClipStatus.SUCCESS, now=T1, video_url="u"
    )
    assert change is not None

    stored = [event_document(event) for event in change.events]

    assert [doc["type"] for doc in stored] == ["clip.updated", "project.finished"]
    assert [event_from_document(doc) for doc in stored] == change.events


def test_cursor_round_trips_at_millisecond_precision() -> None:
    token = encode_cursor(T0, "p-42")

    assert decode_cursor(token) == (T0, "p-42")
    assert token.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize("garbage", ["", "!!!!", "bm90LWEtY3Vyc29y", "LTE6cA", "MTIzOg"])
def test_a_cursor_we_did_not_make_is_invalid(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(garbage)


def test_claiming_a_clip_for_submission_is_no_public_change() -> None:
    change = clip_change(
        project(), "t0", allowed_from=[ClipStatus.QUEUED], to=ClipStatus.SUBMITTING, now=T1
    )

    assert change is not None
    assert (change.seq, change.new_seq, change.events) == (0, 0, [])
    assert change.set["clips.t0.status"] == "submitting"


def test_a_clip_not_in_an_allowed_state_is_left_alone() -> None:
    done = with_clip(project(), "t0", ClipStatus.SUCCESS, video_url="u")

    assert clip_change(done, "t0", allowed_from=NOT_TERMINAL, to=ClipStatus.FAILED, now=T1) is None
    assert (
        clip_change(done, "nope", allowed_from=NOT_TERMINAL, to=ClipStatus.FAILED, now=T1) is None
    )


def test_the_last_clip_to_end_also_finishes_the_project_in_the_same_change() -> None:
    one_done = with_clip(project(), "t0", ClipStatus.SUCCESS, video_url="u")

    change = clip_change(
        one_done, "t1", allowed_from=NOT_TERMINAL, to=ClipStatus.FAILED, now=T1,
        error={"code": "x", "message": "boom"},
    )  # fmt: skip

    assert change is not None
    updated, finished = change.events
    assert isinstance(updated, ClipUpdated)
    assert isinstance(finished, ProjectFinished)
    assert (updated.seq, finished.seq, change.new_seq) == (2, 3, 3)
    assert finished.status is ProjectStatus.PARTIAL
    assert change.set["status"] == "partial"
    assert change.set["finished_at"] == T1


def test_retry_replaces_a_failed_clip_and_reopens_the_project() -> None:
    failed = with_clip(project(1), "t0", ClipStatus.FAILED, error={"code": "x", "message": "m"})
    failed = failed.model_copy(update={"status": ProjectStatus.FAILED})

    change = retry_change(failed, now=T1, new_task_uuid=lambda: "t9")

    assert change is not None
    assert change.unset == ["clips.t0", "finished_at"]
    assert change.set["clips.t9"]["status"] == "queued"
    assert change.set["status"] == "generating"
    assert change.set["dispatched"] is False
    (event,) = change.events
    assert isinstance(event, ClipUpdated)
    assert (event.clip.task_uuid, event.replaces_task_uuid, event.counts.pending) == ("t9", "t0", 1)
    new_clip = change.set["clips.t9"]
    assert (new_clip["scene_index"], new_clip["prompt"], new_clip["duration"]) == (0, "scene 0", 4)


def _stored(*seqs: int) -> list[dict[str, object]]:
    counts = Counts(total_clips=1, completed=0, pending=1, failed=0)
    events = [
        ClipUpdated(
            project_id="p1",
            tenant_id="a",
            seq=seq,
            clip=ClipView(task_uuid=f"t{seq}", scene_index=0, status=ClipStatus.PROCESSING),
            counts=counts,
        )
        for seq in seqs
    ]
    return [event_document(event) for event in events]


def test_replay_gives_what_follows_or_none_when_a_gap_would_be_hidden() -> None:
    log = _stored(4, 5, 6)

    assert [e.seq for e in replay_after(6, log, 3) or []] == [4, 5, 6]
    assert [e.seq for e in replay_after(6, log, 5) or []] == [6]
    assert replay_after(6, log, 6) == []
    assert replay_after(6, log, 2) is None  # seq 3 has dropped out of the log
    assert replay_after(6, log, 7) is None  # a seq this project never had


def test_events_about_a_clip_include_the_finish_it_caused() -> None:
    log = _stored(1, 2)
    finished = ProjectFinished(
        project_id="p1",
        tenant_id="a",
        seq=3,
        status=ProjectStatus.COMPLETED,
        counts=Counts(total_clips=2, completed=2, pending=0, failed=0),
    )
    log.append(event_document(finished))

    assert [e.seq for e in about_clip(log, "t2")] == [2, 3]
    assert [e.seq for e in about_clip(log, "t1")] == [1]
