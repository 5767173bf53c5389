"""The project store on a real database: idempotency, paging, and races between writers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import ClipUpdated, Event, ProjectFinished
from reelflow_common.mongo import Database
from reelflow_common.store import (
    IdempotencyConflict,
    InvalidCursor,
    NewClip,
    NewProject,
    Project,
    ProjectStore,
)
from reelflow_common.store.timefmt import utcnow

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand, one millisecond per reading so ordering is strict."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(mongo_db: Database, clock: Clock) -> ProjectStore:
    store = ProjectStore(mongo_db, clock=clock)
    await store.ensure_indexes()
    return store


def new_project(
    scenes: int = 2, *, tenant: str = "tenant-a", key: str | None = None, body: str = "h1"
) -> NewProject:
    return NewProject(
        tenant_id=tenant,
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[NewClip(prompt=f"scene {i}", duration=4, width=1280) for i in range(scenes)],
        idempotency_key=key,
        request_hash=body,
        correlation_id="req-1",
    )


async def created(store: ProjectStore, scenes: int = 2, **kwargs: Any) -> Project:
    return (await store.create(new_project(scenes, **kwargs))).project


async def raw(mongo_db: Database, project_id: str) -> dict[str, Any]:
    doc = await mongo_db["projects"].find_one({"_id": project_id})
    assert doc is not None
    return doc


def succeed(store: ProjectStore, project: Project, index: int) -> Any:
    return store.record_success(
        project.id,
        project.clips[index].task_uuid,
        video_url=f"https://v/{index}.mp4",
        video_uuid=f"v{index}",
        cost=0.1,
        seed=7,
        completed_at=NOW,
    )


def fail(store: ProjectStore, project: Project, index: int) -> Any:
    return store.record_failure(
        project.id, project.clips[index].task_uuid, code="x", message="boom", completed_at=NOW
    )


# --- create, get, list --------------------------------------------------------------------


async def test_a_created_project_reads_back_only_for_its_own_tenant(store: ProjectStore) -> None:
    result = await store.create(new_project(3))

    assert result.created
    project = result.project
    assert await store.get(project.id) == project
    assert await store.get(project.id, tenant_id="tenant-a") == project
    assert await store.get(project.id, tenant_id="tenant-b") is None
    assert await store.get("no-such-project") is None
    assert [clip.scene_index for clip in project.clips] == [0, 1, 2]
    assert len({clip.task_uuid for clip in project.clips}) == 3
    assert not project.dispatched


async def test_the_same_key_and_body_return_the_first_project(store: ProjectStore) -> None:
    first = await store.create(new_project(key="k1"))
    again = await store.create(new_project(key="k1"))
    other_tenant = await store.create(new_project(key="k1", tenant="tenant-b"))

    assert (first.created, again.created, other_tenant.created) == (True, False, True)
    assert again.project == first.project
    assert other_tenant.project.id != first.project.id


async def test_the_same_key_with_another_body_is_a_conflict(store: ProjectStore) -> None:
    await store.create(new_project(key="k1", body="h1"))

    with pytest.raises(IdempotencyConflict):
        await store.create(new_project(key="k1", body="h2"))


async def test_a_key_older_than_a_day_starts_a_new_project(
    store: ProjectStore, clock: Clock
) -> None:
    first = await store.create(new_project(key="k1"))
    clock.now += timedelta(hours=24, seconds=1)

    later = await store.create(new_project(key="k1", body="another body"))

    assert later.created
    assert later.project.id != first.project.id
    assert await store.create(new_project(key="k1", body="another body")) == later.model_copy(
        update={"created": False}
    )


async def test_concurrent_creates_with_one_key_make_one_project(
    store: ProjectStore, mongo_db: Database
) -> None:
    results = await asyncio.gather(*(store.create(new_project(key="k1")) for _ in range(8)))

    assert sum(result.created for result in results) == 1
    assert len({result.project.id for result in results}) == 1
    assert await mongo_db["projects"].count_documents({}) == 1


async def test_listing_pages_newest_first_and_filters_by_status(store: ProjectStore) -> None:
    made = [await created(store, 1) for _ in range(5)]
    await created(store, 1, tenant="tenant-b")
    await succeed(store, made[1], 0)
    newest_first = [project.id for project in reversed(made)]

    page1, cursor1 = await store.list("tenant-a", limit=2)
    page2, cursor2 = await store.list("tenant-a", limit=2, cursor=cursor1)
    page3, cursor3 = await store.list("tenant-a", limit=2, cursor=cursor2)
    done, _ = await store.list("tenant-a", status=ProjectStatus.COMPLETED, limit=10)

    assert [p.id for p in page1 + page2 + page3] == newest_first
    assert (cursor1 is not None, cursor2 is not None, cursor3) == (True, True, None)
    assert [p.id for p in done] == [made[1].id]


async def test_projects_created_in_the_same_millisecond_page_without_loss(
    mongo_db: Database,
) -> None:
    store = ProjectStore(mongo_db, clock=lambda: NOW)
    made = {(await created(store, 1)).id for _ in range(5)}

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        page, cursor = await store.list("tenant-a", limit=2, cursor=cursor)
        seen += [project.id for project in page]
        if cursor is None:
            break

    assert sorted(seen) == sorted(made)


async def test_a_garbage_cursor_is_refused(store: ProjectStore) -> None:
    with pytest.raises(InvalidCursor):
        await store.list("tenant-a", limit=2, cursor="not-a-cursor")


async def test_undispatched_projects_are_found_until_marked(store: ProjectStore) -> None:
    project = await created(store)

    found = await store.undispatched(older_than=NOW + timedelta(hours=1))
    await store.mark_dispatched(project)

    assert [p.id for p in found] == [project.id]
    assert await store.undispatched(older_than=NOW + timedelta(hours=1)) == []
    assert await store.undispatched(older_than=NOW) == []


async def test_a_dispatch_of_an_older_read_does_not_cover_clips_a_retry_queued(
    store: ProjectStore, clock: Clock
) -> None:
    project = await created(store, 1)
    await fail(store, project, 0)
    stale_read = await store.get(project.id)
    assert stale_read is not None
    clock.now += timedelta(seconds=1)
    await store.retry_failed(project.id, tenant_id="tenant-a")

    await store.mark_dispatched(stale_read)

    after = await store.get(project.id)
    assert after is not None
    assert after.dispatched is False
    assert [p.id for p in await store.undispatched(older_than=clock.now + timedelta(hours=1))] == [
        project.id
    ]


async def test_a_retried_project_is_undispatched_from_the_retry_on(
    store: ProjectStore, clock: Clock
) -> None:
    project = await created(store, 1)
    await store.mark_dispatched(project)
    await fail(store, project, 0)
    clock.now += timedelta(hours=1)
    retried_at = clock.now

    await store.retry_failed(project.id, tenant_id="tenant-a")

    assert await store.undispatched(older_than=retried_at) == []
    found = await store.undispatched(older_than=retried_at + timedelta(minutes=1))
    assert [p.id for p in found] == [project.id]


# --- clip transitions --------------------------------------------------------------------


async def test_a_clip_goes_queued_submitting_processing_success(
    store: ProjectStore, mongo_db: Database
) -> None:
    project = await created(store)
    task = project.clips[0].task_uuid

    claimed = await store.start_submitting(project.id, task)
    after_claim = await store.get(project.id)
    processing = await store.mark_processing(project.id, task, submitted_at=NOW)
    done = await succeed(store, project, 0)

    assert claimed is not None
    assert (claimed.status, claimed.prompt, claimed.model) == (
        "submitting",
        "scene 0",
        "google:3@3",
    )
    assert after_claim is not None
    assert after_claim.seq == 0  # submitting is not a public change
    assert after_claim.public_status()["results"][0]["status"] == "queued"
    assert [(e.seq, e.clip.status) for e in processing if isinstance(e, ClipUpdated)] == [
        (1, ClipStatus.PROCESSING)
    ]
    (event,) = done
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.clip.video_url) == (2, "success", "https://v/0.mp4")
    assert event.counts == Counts(total_clips=2, completed=1, pending=1, failed=0)
    assert event.correlation_id == "req-1"
    doc = await raw(mongo_db, project.id)
    assert doc["seq"] == 2
    assert doc["clips"][task]["seed"] == 7
    assert [e["seq"] for e in doc["events"]] == [1, 2]


async def test_duplicate_and_late_updates_change_nothing(
    store: ProjectStore, mongo_db: Database
) -> None:
    project = await created(store)
    task = project.clips[0].task_uuid
    await store.mark_processing(project.id, task, submitted_at=NOW)
    await succeed(store, project, 0)
    before = await raw(mongo_db, project.id)

    assert await succeed(store, project, 0) == []
    assert await fail(store, project, 0) == []
    assert await store.mark_processing(project.id, task, submitted_at=NOW) == []
    assert await store.start_submitting(project.id, task) is None
    assert await store.start_submitting(project.id, "no-such-task") is None
    assert await store.mark_processing("no-such-project", task, submitted_at=NOW) == []
    assert await raw(mongo_db, project.id) == before


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ("sss", ProjectStatus.COMPLETED),
        ("ssf", ProjectStatus.PARTIAL),
        ("fff", ProjectStatus.FAILED),
    ],
)
async def test_racing_writers_finish_a_project_exactly_once(
    store: ProjectStore, outcomes: str, expected: ProjectStatus
) -> None:
    project = await created(store, len(outcomes))
    writers: list[Callable[[], Any]] = []
    for index, outcome in enumerate(outcomes):
        record = succeed if outcome == "s" else fail
        # every clip is reported twice, as a poll and a webhook would
        writers += [functools.partial(record, store, project, index)] * 2

    results: list[list[Event]] = await asyncio.gather(*(write() for write in writers))

    events = sorted((e for batch in results for e in batch), key=lambda e: e.seq)
    finished = [e for e in events if isinstance(e, ProjectFinished)]
    assert [e.seq for e in events] == list(range(1, len(outcomes) + 2))
    assert len(finished) == 1
    assert finished[0].status is expected
    assert finished[0].seq == len(outcomes) + 1
    final = await store.get(project.id)
    assert final is not None
    assert (final.status, final.seq, final.counts.pending) == (expected, len(outcomes) + 1, 0)
    assert final.finished_at is not None


# --- project operations ------------------------------------------------------------------


async def test_cancel_stops_every_unfinished_clip_and_finishes_the_project(
    store: ProjectStore,
) -> None:
    project = await created(store, 3)
    await succeed(store, project, 0)

    outcome = await store.cancel(project.id, tenant_id="tenant-a")
    again = await store.cancel(project.id, tenant_id="tenant-a")

    assert outcome is not None
    cancelled, events = outcome
    assert [clip.status for clip in cancelled.clips] == ["success", "cancelled", "cancelled"]
    assert [e.message_type for e in events] == ["clip.updated", "clip.updated", "project.finished"]
    assert [e.seq for e in events] == [2, 3, 4]
    assert cancelled.status is ProjectStatus.CANCELLED  # though one clip did finish
    assert again == (cancelled, [])
    assert await store.cancel(project.id, tenant_id="tenant-b") is None
    assert await succeed(store, project, 1) == []


async def test_retry_gives_failed_clips_new_tasks_and_reopens_the_project(
    store: ProjectStore,
) -> None:
    project = await created(store, 2)
    await succeed(store, project, 0)
    await fail(store, project, 1)
    failed_task = project.clips[1].task_uuid

    outcome = await store.retry_failed(project.id, tenant_id="tenant-a")

    assert outcome is not None
    retried, events = outcome
    (new_clip,) = outcome.new_clips
    assert new_clip.task_uuid != failed_task
    assert (new_clip.scene_index, new_clip.status, new_clip.prompt) == (1, "queued", "scene 1")
    assert [clip.task_uuid for clip in retried.clips] == [
        project.clips[0].task_uuid,
        new_clip.task_uuid,
    ]
    assert (retried.status, retried.finished_at, retried.dispatched) == ("generating", None, False)
    assert retried.counts == Counts(total_clips=2, completed=1, pending=1, failed=0)
    (event,) = events
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.replaces_task_uuid) == (4, failed_task)
    assert await fail(store, project, 1) == []  # the old task is gone
    assert await store.retry_failed(project.id, tenant_id="tenant-b") is None
    assert await store.retry_failed(project.id, tenant_id="tenant-a") == (retried, [])


# --- the event log -----------------------------------------------------------------------


async def test_events_replay_after_a_seq_until_the_log_has_dropped_them(
    mongo_db: Database,
) -> None:
    store = ProjectStore(mongo_db, event_log_size=3, clock=utcnow)
    project = await created(store, 3)
    for index in range(3):
        await store.mark_processing(project.id, project.clips[index].task_uuid, submitted_at=NOW)
    for index in range(3):
        await succeed(store, project, index)  # seq 4..6, then project.finished at 7

    assert [e.seq for e in await store.events_after(project.id, 4) or []] == [5, 6, 7]
    assert await store.events_after(project.id, 7) == []
    assert await store.events_after(project.id, 3) is None
    assert await store.events_after("no-such-project", 0) is None


async def test_events_for_a_clip_are_those_it_caused(store: ProjectStore) -> None:
    project = await created(store, 2)
    first, last = project.clips
    await store.mark_processing(project.id, first.task_uuid, submitted_at=NOW)
    await succeed(store, project, 1)
    await succeed(store, project, 0)

    about_first = await store.events_for_clip(project.id, first.task_uuid)
    about_last = await store.events_for_clip(project.id, last.task_uuid)

    assert [(e.message_type, e.seq) for e in about_first] == [
        ("clip.updated", 1),
        ("clip.updated", 3),
        ("project.finished", 4),
    ]
    assert [(e.message_type, e.seq) for e in about_last] == [("clip.updated", 2)]


async def test_public_status_of_a_stored_project_matches_the_seed_shape(
    store: ProjectStore,
) -> None:
    project = await created(store, 2)
    await succeed(store, project, 0)
    stored = await store.get(project.id)
    assert stored is not None

    status = stored.public_status()

    first, second = (clip.task_uuid for clip in project.clips)
    assert {key: status[key] for key in list(status)[:8]} == {
        "success": True,
        "project_id": project.id,
        "total_clips": 2,
        "completed": 1,
        "pending": 1,
        "failed": 0,
        "all_complete": False,
        "clips": {first: "https://v/0.mp4", second: "pending"},
    }
    assert status["updated_at"] > status["created_at"]
