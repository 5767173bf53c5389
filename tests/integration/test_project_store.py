"""The project store on a real database: idempotency, paging, guarded changes and races."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import DocumentTooLarge
from pymongo.results import UpdateResult

from reelflow_common.domain import ClipRequest, ClipStatus, Counts, ProjectStatus
from reelflow_common.errors import TransientError
from reelflow_common.messages import AttemptSucceeded, ClipUpdated, Event, ProjectFinished
from reelflow_common.mongo import REREAD_ATTEMPTS, Database
from reelflow_common.store import (
    TIMED_OUT,
    Change,
    CreateResult,
    IdempotencyConflict,
    InvalidCursor,
    NewProject,
    Project,
    ProjectStore,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
    together,
)
from reelflow_common.store.timefmt import utcnow

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEASE_S = 600.0


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
    store = ProjectStore(mongo_db, clock=clock, lease_s=LEASE_S)
    await store.ensure_indexes()
    return store


def new_project(
    scenes: int = 2, *, tenant: str = "tenant-a", key: str | None = None, body: str = "h1"
) -> NewProject:
    return NewProject(
        tenant_id=tenant,
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt=f"scene {i}", duration=4, width=1280) for i in range(scenes)],
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


async def reread(store: ProjectStore, project: Project) -> Project:
    found = await store.get(project.id)
    assert found is not None
    return found


def token(project: Project, index: int) -> str:
    lease = project.clips[index].lease
    assert lease is not None
    return lease.token


def processing(store: ProjectStore, project: Project, index: int) -> Any:
    clip = project.clips[index]
    return store.mark_processing(project.id, index, clip.task_uuid, token=token(project, index))


def succeed(store: ProjectStore, project: Project, index: int, cost: float = 0.1) -> Any:
    result = TaskSucceeded(video_url=f"https://v/{index}.mp4", video_uuid=f"v{index}", cost=cost)
    return store.record(project.id, index, project.clips[index].task_uuid, result)


def fail(store: ProjectStore, project: Project, index: int, code: str = "x") -> Any:
    failure = TaskFailed(code=code, message="boom")
    return store.record(project.id, index, project.clips[index].task_uuid, failure)


# --- create, get, list --------------------------------------------------------------------


async def test_a_created_project_reads_back_only_for_its_own_tenant(
    store: ProjectStore, mongo_db: Database
) -> None:
    result = await store.create(new_project(3))

    assert result.created
    project = result.project
    stored = await store.get(project.id)
    assert stored == project.model_copy(update={"requests": None})
    assert await store.get(project.id, tenant_id="tenant-a") == stored
    assert await store.get(project.id, tenant_id="tenant-b") is None
    assert await store.get("no-such-project") is None
    with_requests = await store.get(project.id, with_requests=True)
    assert with_requests is not None
    assert [r.prompt for r in with_requests.requests or []] == ["scene 0", "scene 1", "scene 2"]
    assert [clip.scene_index for clip in project.clips] == [0, 1, 2]
    assert len({clip.task_uuid for clip in project.clips}) == 3
    assert len({token(project, i) for i in range(3)}) == 3
    doc = await raw(mongo_db, project.id)
    assert doc["schema"] == 2
    assert sorted(doc["clips"]) == ["0", "1", "2"]
    leases = {clip["lease"]["until"].replace(tzinfo=UTC) for clip in doc["clips"].values()}
    assert leases == {project.created_at + timedelta(seconds=LEASE_S)}
    assert doc["due_at"].replace(tzinfo=UTC) == project.created_at + timedelta(seconds=LEASE_S)


async def test_many_projects_read_in_one_query_each_only_for_its_own_tenant(
    store: ProjectStore,
) -> None:
    first = (await store.create(new_project(2))).project
    second = (await store.create(new_project(1, tenant="tenant-b"))).project

    found = await store.get_many(
        [
            (first.id, "tenant-a"),
            (first.id, "tenant-b"),
            ("no-such-project", "tenant-a"),
            (second.id, "tenant-b"),
            (first.id, "tenant-a"),
        ]
    )

    assert found == [
        await store.get(first.id),
        None,
        None,
        await store.get(second.id),
        await store.get(first.id),
    ]
    assert found[0] is not None
    assert found[0].requests is None  # as ``get`` reads it


async def test_the_same_key_and_body_return_the_first_project(store: ProjectStore) -> None:
    first = await store.create(new_project(key="k1"))
    again = await store.create(new_project(key="k1"))
    other_tenant = await store.create(new_project(key="k1", tenant="tenant-b"))

    assert (first.created, again.created, other_tenant.created) == (True, False, True)
    assert again.project == first.project.model_copy(update={"requests": None})
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
    replay = await store.create(new_project(key="k1", body="another body"))
    assert (replay.created, replay.project.id) == (False, later.project.id)


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
    assert all(p.requests is None for p in page1)


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


# --- clip transitions --------------------------------------------------------------------


async def test_a_clip_goes_queued_processing_success_with_one_event_each(
    store: ProjectStore, mongo_db: Database
) -> None:
    project = await created(store)
    task = project.clips[0].task_uuid

    started: Change = await processing(store, project, 0)
    done: Change = await succeed(store, project, 0, cost=0.25)

    assert started.applied
    assert started.at is not None
    assert started.lease_until == started.at + timedelta(seconds=LEASE_S)
    (event,) = started.events
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.clip.submitted_at) == (
        1,
        ClipStatus.PROCESSING,
        started.at,
    )
    assert event.counts == Counts(total_clips=2, completed=0, pending=2, failed=0)
    assert done.applied
    (event,) = done.events
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.clip.video_url) == (2, "success", "https://v/0.mp4")
    assert event.counts == Counts(total_clips=2, completed=1, pending=1, failed=0)
    assert event.correlation_id == "req-1"
    doc = await raw(mongo_db, project.id)
    assert doc["seq"] == 2
    assert doc["clips"]["0"]["task_uuid"] == task
    assert "lease" not in doc["clips"]["0"]
    assert doc["cost"] == {"usd": 0.25, "known": 1, "unknown": 0}
    assert len(doc["events"]) == 2


async def test_a_chain_without_the_clips_token_cannot_record_processing(
    store: ProjectStore,
) -> None:
    project = await created(store, 1)
    clip = project.clips[0]

    stale = await store.mark_processing(project.id, 0, clip.task_uuid, token="not-the-token")

    assert not stale.applied
    assert (await reread(store, project)).clips[0].status is ClipStatus.QUEUED


async def test_duplicate_and_late_updates_change_nothing_but_repeat_the_events(
    store: ProjectStore, mongo_db: Database
) -> None:
    project = await created(store)
    await processing(store, project, 0)
    await succeed(store, project, 0)
    before = await raw(mongo_db, project.id)

    again: Change = await succeed(store, project, 0)
    failed: Change = await fail(store, project, 0)
    processing_again: Change = await processing(store, project, 0)

    for change in (again, failed, processing_again):
        assert not change.applied
        # What a crash between write and publish may have left unpublished, again.
        assert [(type(e).__name__, e.seq) for e in change.events] == [
            ("ClipUpdated", 1),
            ("ClipUpdated", 2),
        ]
    elsewhere = await store.record("no-such-project", 0, "t", TaskFailed(code="x", message="y"))
    assert elsewhere == Change(False, [])
    wrong_task = await store.record(
        project.id, 1, "not-its-task", TaskFailed(code="x", message="y")
    )
    assert wrong_task == Change(False, [])
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

    results: list[Change] = await asyncio.gather(*(write() for write in writers))

    # A duplicate whose guard failed may run the finisher itself (the repair path): what
    # counts is what all writers published together, by seq.
    published = {e.seq: e for change in results for e in change.events}
    finished = [e for e in published.values() if isinstance(e, ProjectFinished)]
    assert sorted(published) == list(range(1, len(outcomes) + 2))
    assert sum(change.applied for change in results) == len(outcomes)
    assert len(finished) == 1
    assert finished[0].status is expected
    assert finished[0].seq == len(outcomes) + 1
    stored = await store.events_after(project.id, 0)
    assert sum(isinstance(e, ProjectFinished) for e in stored or []) == 1
    final = await reread(store, project)
    assert (final.status, final.seq, final.counts.pending) == (expected, len(outcomes) + 1, 0)
    assert final.finished_at is not None


class ProjectCommands(monitoring.CommandListener):
    """Counts the ``findAndModify`` and ``insert`` commands on ``projects`` a client sends."""

    def __init__(self) -> None:
        self.updates = 0
        self.inserts = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in ("findAndModify", "insert") and event.command[name] == "projects":
            if name == "insert":
                self.inserts += 1
            else:
                self.updates += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(
    mongo_url: str, mongo_db: Database, clock: Clock
) -> AsyncIterator[tuple[ProjectStore, ProjectCommands]]:
    """A store on this test's database whose updates and inserts of projects are counted."""
    commands = ProjectCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, uuidRepresentation="standard", tz_aware=True, event_listeners=[commands]
    )
    try:
        store = ProjectStore(client[mongo_db.name], clock=clock, lease_s=LEASE_S)
        yield store, commands
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("outcome", "expected"), [("s", ProjectStatus.COMPLETED), ("f", ProjectStatus.FAILED)]
)
async def test_a_one_scene_projects_end_is_one_update_that_finishes_it(
    counted: tuple[ProjectStore, ProjectCommands], outcome: str, expected: ProjectStatus
) -> None:
    store, commands = counted
    project = await created(store, 1)
    await processing(store, project, 0)
    task = project.clips[0].task_uuid
    result: TaskResult = (
        TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.1)
        if outcome == "s"
        else TaskFailed(code="x", message="boom")
    )
    before = commands.updates

    change = await store.record(project.id, 0, task, result, correlation_id="req-2", only_clip=True)

    assert commands.updates - before == 1  # the clip's end and the finish, together
    assert change.applied
    assert [type(event) for event in change.events] == [ClipUpdated, ProjectFinished]
    assert [event.seq for event in change.events] == [2, 3]
    finished = change.events[1]
    assert isinstance(finished, ProjectFinished)
    assert finished.status is expected
    # The clip's end is the check's; the finish is the project's, as the finisher's is.
    assert [event.correlation_id for event in change.events] == ["req-2", "req-1"]
    final = await reread(store, project)
    assert (final.status, final.seq, final.counts.pending) == (expected, 3, 0)
    assert final.finished_at == finished.occurred_at
    assert (await store.events_after(project.id, 1) or []) == change.events  # as stored

    # Told again (a webhook and the chain, a redelivery): nothing is written; what was is
    # published again (a crash may have come before it was), the same events, same seqs.
    again = await store.record(project.id, 0, task, result, only_clip=True)
    assert not again.applied
    stored = await store.events_after(project.id, 0) or []
    assert finished in again.events  # should a crash have come before it was published
    assert all(event in stored for event in again.events)
    assert (await reread(store, project)).seq == 3


async def test_writers_racing_to_end_a_one_scene_project_finish_it_exactly_once(
    store: ProjectStore,
) -> None:
    project = await created(store, 1)
    await processing(store, project, 0)
    task = project.clips[0].task_uuid
    result = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.1)

    # the chain's check twice (a redelivery) and a webhook's hint (written apart)
    results = await asyncio.gather(
        store.record(project.id, 0, task, result, only_clip=True),
        store.record(project.id, 0, task, result, only_clip=True),
        store.record(project.id, 0, task, result),
    )

    assert sum(change.applied for change in results) == 1
    published = {event.seq: event for change in results for event in change.events}
    assert sorted(published) == [1, 2, 3]
    assert isinstance(published[3], ProjectFinished)
    stored = await store.events_after(project.id, 0) or []
    assert sum(isinstance(event, ProjectFinished) for event in stored) == 1
    final = await reread(store, project)
    assert (final.status, final.seq, final.counts.pending) == (ProjectStatus.COMPLETED, 3, 0)


async def test_a_clip_said_to_be_its_projects_only_one_finishes_nothing_while_others_pend(
    counted: tuple[ProjectStore, ProjectCommands],
) -> None:
    store, commands = counted
    project = await created(store, 2)
    await processing(store, project, 0)
    await processing(store, project, 1)
    result = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.1)
    before = commands.updates

    change = await store.record(project.id, 0, project.clips[0].task_uuid, result, only_clip=True)

    # The finishing update's guard held not (two clips): the end is written as any other.
    assert commands.updates - before == 2
    assert change.applied
    assert [type(event) for event in change.events] == [ClipUpdated]
    assert (await reread(store, project)).status is ProjectStatus.GENERATING
    last = await succeed(store, project, 1)
    assert [type(event) for event in last.events] == [ClipUpdated, ProjectFinished]
    assert (await reread(store, project)).status is ProjectStatus.COMPLETED


async def test_projects_created_at_once_are_inserted_together_each_with_its_own_outcome(
    counted: tuple[ProjectStore, ProjectCommands], mongo_db: Database
) -> None:
    store, commands = counted
    await store.ensure_indexes()  # the idempotency key's unique index
    keys = ["k0", "k1", "k2", "k3", "k4", "k1"]  # the last one a replay of the second

    results = await asyncio.gather(*(store.create(new_project(key=key)) for key in keys))

    # Asked for in one turn of the event loop: one insert, the duplicate key refused in it.
    assert commands.inserts == 1
    assert [result.created for result in results] == [True] * 5 + [False]
    assert results[5].project.id == results[1].project.id
    assert await mongo_db["projects"].count_documents({}) == 5
    for result in results[:5]:
        assert await store.get(result.project.id, tenant_id=result.project.tenant_id)


def refused_unsent_with(
    store: ProjectStore, marked: Callable[[dict[str, Any]], bool], *, send_first: bool = False
) -> Callable[..., Any]:
    """``insert_many`` as the driver runs it for a batch holding a document BSON cannot
    encode (an integer over 8 bytes): an error, the batch unsent, or with ``send_first``
    the documents before the bad one sent first, as when the driver splits a batch.

    A ``NewProject`` cannot carry such a value past ``new_project_document`` (it encodes
    the requests), so the refusal is played for the documents ``marked`` names."""
    insert_many = store._projects.insert_many

    async def refused(docs: list[dict[str, Any]], **options: Any) -> Any:
        bad = next((index for index, doc in enumerate(docs) if marked(doc)), None)
        if bad is None:
            return await insert_many(docs, **options)
        if send_first and bad > 0:
            await insert_many(docs[:bad], **options)
        raise OverflowError("MongoDB can only handle up to 8-byte ints")

    return refused


async def test_a_project_the_driver_will_not_send_fails_only_its_own_create_of_those_made_at_once(
    counted: tuple[ProjectStore, ProjectCommands],
    mongo_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, commands = counted
    # Too large for the server, which insert_one's driver check refuses on its own.
    huge = new_project(1).model_copy(update={"title": "x" * 17 * 2**20})
    refused = refused_unsent_with(store, lambda doc: len(doc["title"]) > 16 * 2**20)
    monkeypatch.setattr(store._projects, "insert_many", refused)

    results = await asyncio.gather(
        store.create(new_project()),
        store.create(huge),
        store.create(new_project()),
        return_exceptions=True,
    )

    assert isinstance(results[1], DocumentTooLarge)  # its own insert_one's
    made = [result for result in results if isinstance(result, CreateResult)]
    assert len(made) == 2
    assert all(result.created for result in made)
    assert await mongo_db["projects"].count_documents({}) == 2
    assert commands.inserts == 2  # the two went one by one after the batch was refused


async def test_a_batch_partly_sent_before_the_driver_refused_it_makes_each_project_once(
    counted: tuple[ProjectStore, ProjectCommands],
    mongo_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _commands = counted
    refused_once: list[str] = []

    def marked(doc: dict[str, Any]) -> bool:
        # The third project refuses its batch once, after the first two were sent.
        if doc["title"] == "third" and not refused_once:
            refused_once.append(doc["_id"])
            return True
        return False

    monkeypatch.setattr(
        store._projects, "insert_many", refused_unsent_with(store, marked, send_first=True)
    )

    results = await asyncio.gather(
        *(store.create(new_project().model_copy(update={"title": t})) for t in ("a", "b", "third"))
    )

    assert refused_once  # the batch was refused once, after two of its documents were sent
    assert [result.created for result in results] == [True, True, True]
    assert await mongo_db["projects"].count_documents({}) == 3
    assert {doc["_id"] async for doc in mongo_db["projects"].find({}, {"_id": 1})} == {
        result.project.id for result in results
    }


async def test_an_insert_sent_again_after_it_landed_makes_its_creates_own_project(
    store: ProjectStore, mongo_db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply of an insert that landed was lost and the driver sent it again (to a server
    that did not know it for a retry): refused on its ``_id``, the project is the create's
    own, not a replay of another (whose reservation a caller would then give back)."""
    # Another project with no key, as the second below, and newer (the clock moved back):
    # of the two, the one a look-up of a key of none finds first.
    other = await created(store)
    clock.now -= timedelta(hours=1)
    insert_many = store._projects.insert_many

    async def sent_twice(docs: list[dict[str, Any]], **options: Any) -> Any:
        await insert_many(docs, **options)
        return await insert_many(docs, **options)

    monkeypatch.setattr(store._projects, "insert_many", sent_twice)

    results = [
        await store.create(new_project(key="k1"), project_id="with-key"),
        await store.create(new_project(), project_id="without-key"),
    ]

    assert [(result.created, result.project.id) for result in results] == [
        (True, "with-key"),
        (True, "without-key"),
    ]
    assert await mongo_db["projects"].count_documents({}) == 3
    assert other.id not in {result.project.id for result in results}


async def test_changes_of_a_projects_clips_made_at_once_are_written_together(
    counted: tuple[ProjectStore, ProjectCommands],
) -> None:
    store, commands = counted
    project = await created(store, 4)

    started = await asyncio.gather(*(processing(store, project, i) for i in range(4)))
    ended = await asyncio.gather(*(succeed(store, project, i) for i in range(4)))

    # One update per burst, then the finish: 3 updates, where one per change would be 9.
    assert commands.updates == 3
    assert all(change.applied for change in started + ended)
    # Each writer gets the event of its own clip, numbered as the update numbered it.
    for scene, change in enumerate(started):
        (event,) = change.events
        assert isinstance(event, ClipUpdated)
        assert (event.clip.scene_index, event.clip.status) == (scene, "processing")
    own = [[e for e in change.events if isinstance(e, ClipUpdated)] for change in ended]
    assert [[(e.clip.scene_index, e.clip.status) for e in events] for events in own] == [
        [(scene, "success")] for scene in range(4)
    ]
    published = [e for change in started + ended for e in change.events]
    assert sorted(e.seq for e in published) == list(range(1, 10))
    (finished,) = [e for e in published if isinstance(e, ProjectFinished)]
    assert (finished.seq, finished.status) == (9, ProjectStatus.COMPLETED)
    assert await store.events_after(project.id, 0) == sorted(published, key=lambda e: e.seq)
    final = await reread(store, project)
    assert (final.status, final.seq, final.counts.completed) == (ProjectStatus.COMPLETED, 9, 4)
    assert final.cost.usd == pytest.approx(0.4)


async def test_a_change_that_no_longer_applies_does_not_hold_back_those_written_with_it(
    counted: tuple[ProjectStore, ProjectCommands],
) -> None:
    store, commands = counted
    project = await created(store, 4)
    await asyncio.gather(*(processing(store, project, i) for i in range(4)))
    (late,) = (await succeed(store, project, 2)).events

    # Clip 2's success comes again (a webhook, then its check), with the other three.
    commands.updates = 0
    ended = await asyncio.gather(*(succeed(store, project, i) for i in (3, 0, 2, 1)))

    # The four together matched nothing; then each alone (clip 2's matching nothing either),
    # and the finish.
    assert commands.updates == 1 + 4 + 1
    assert [change.applied for change in ended] == [True, True, False, True]
    assert late in ended[2].events  # its repair re-publishes the stored events of clip 2
    # ... and the finish, if it comes after it: what counts is all of them, by seq.
    published = {e.seq: e for change in ended for e in change.events if e.seq > late.seq}
    assert sorted(published) == list(range(late.seq + 1, late.seq + 5))
    assert sum(isinstance(e, ProjectFinished) for e in published.values()) == 1
    final = await reread(store, project)
    assert (final.status, final.counts.completed, final.seq) == (
        ProjectStatus.COMPLETED, 4, late.seq + 4,
    )  # fmt: skip


async def test_a_second_change_of_a_clip_in_a_burst_goes_alone_and_the_others_together(
    counted: tuple[ProjectStore, ProjectCommands],
) -> None:
    store, commands = counted
    project = await created(store, 3)
    await asyncio.gather(*(processing(store, project, i) for i in range(3)))
    commands.updates = 0

    # Clip 1's end twice at once (a webhook and its check), with the other two clips' ends.
    ended = await asyncio.gather(*(succeed(store, project, i) for i in (0, 1, 1, 2)))

    # One update for the first end of each clip, the second of clip 1 alone (it matches
    # nothing: its repair reads), and the finish.
    assert commands.updates == 3
    assert [change.applied for change in ended] == [True, True, False, True]
    # (clip 1's repair re-publishes its stored events: its processing, 2, and its end)
    published = {e.seq: e for change in ended for e in change.events if e.seq > 3}
    assert sorted(published) == [4, 5, 6, 7]
    assert isinstance(published[7], ProjectFinished)


async def test_a_merged_update_the_database_refuses_goes_write_by_write(
    counted: tuple[ProjectStore, ProjectCommands], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, commands = counted
    project = await created(store, 3)
    merged = together.merged

    def refused(writes: Any) -> Any:
        write = merged(writes)
        assert write is not None
        return dataclasses.replace(write, update=write.update | {"$rename": {"seq": "seq"}})

    monkeypatch.setattr(together, "merged", refused)

    started = await asyncio.gather(*(processing(store, project, i) for i in range(3)))

    # The refused update, then each change alone: all three made, each with its own event.
    assert commands.updates == 1 + 3
    assert all(change.applied for change in started)
    published = sorted(e.seq for change in started for e in change.events)
    assert published == [1, 2, 3]
    final = await reread(store, project)
    assert [clip.status for clip in final.clips] == ["processing"] * 3


async def test_the_events_a_writer_publishes_are_those_a_replay_gives(store: ProjectStore) -> None:
    project = await created(store, 2)
    published: list[Event] = []
    for change in [
        await processing(store, project, 0),
        await processing(store, project, 1),
        await succeed(store, project, 1),
        await fail(store, project, 0),
    ]:
        published += change.events

    replayed = await store.events_after(project.id, 0)

    assert replayed == published
    assert [e.seq for e in published] == [1, 2, 3, 4, 5]
    assert isinstance(published[-1], ProjectFinished)
    assert published[-1].status is ProjectStatus.PARTIAL


async def test_a_replay_gives_the_cost_a_writer_published_for_prices_past_6_decimals(
    store: ProjectStore,
) -> None:
    """Each video's cost is in the project's as its event shows it (6 decimals): taking the
    later events' costs off the document's gives the cost each writer published, exactly."""
    project = await created(store, 2)
    published: list[Event] = []
    for change in [
        await processing(store, project, 0),
        await processing(store, project, 1),
        await succeed(store, project, 0, cost=0.1234564),
        await succeed(store, project, 1, cost=0.1234564),
    ]:
        published += change.events

    replayed = await store.events_after(project.id, 0)

    assert replayed is not None
    assert [e.cost for e in replayed] == [e.cost for e in published]
    assert [e.cost.usd for e in published if e.cost is not None][-3:] == [
        0.123456,
        0.246912,  # the sum of what the clips show
        0.246912,  # project.finished
    ]


# --- leases ------------------------------------------------------------------------------


async def test_a_lease_is_renewed_only_by_its_chain_and_only_once_per_lease(
    store: ProjectStore, mongo_db: Database
) -> None:
    project = await created(store, 1)
    lease = project.clips[0].lease
    assert lease is not None
    later = NOW + timedelta(hours=1)

    renewals = await asyncio.gather(
        # the same chain twice (a fork after a lost ack), and a stale chain
        store.renew_lease(project.id, 0, token=lease.token, until_was=lease.until, until=later),
        store.renew_lease(project.id, 0, token=lease.token, until_was=lease.until, until=later),
        store.renew_lease(project.id, 0, token="stale", until_was=lease.until, until=later),
    )

    assert sorted(renewals) == [False, False, True]
    doc = await raw(mongo_db, project.id)
    assert doc["clips"]["0"]["lease"]["until"].replace(tzinfo=UTC) == later


async def test_expiring_a_lease_makes_the_project_due_at_once(
    store: ProjectStore, clock: Clock
) -> None:
    project = await created(store, 2)

    await store.expire_leases(project.id, {1: token(project, 1), 0: "stale-token"})

    after = await reread(store, project)
    lease0, lease1 = after.clips[0].lease, after.clips[1].lease
    assert lease0 is not None
    assert lease1 is not None
    assert lease0.until == project.created_at + timedelta(seconds=LEASE_S)
    assert lease1.until < project.created_at + timedelta(seconds=1)
    due = await store.due(before=clock.now + timedelta(seconds=1), limit=10)
    assert [project_id for project_id, _ in due] == [project.id]


async def test_one_of_two_reconcilers_claims_a_due_project(
    store: ProjectStore, clock: Clock
) -> None:
    project = await created(store, 1)
    ((project_id, due_at),) = await store.due(before=NOW + timedelta(hours=1), limit=10)
    until = NOW + timedelta(hours=1, seconds=LEASE_S)  # a claim lasts a lease from now

    claims = await asyncio.gather(
        *(store.claim(project_id, due_at=due_at, until=until) for _ in range(4))
    )

    won = [claim for claim in claims if claim is not None]
    assert len(won) == 1
    assert won[0].requests is not None  # a re-dispatch needs them
    await store.release(project_id, claimed=until, due_at=NOW + timedelta(minutes=5))
    assert (await reread(store, project)).due_at == NOW + timedelta(minutes=5)
    assert await store.claim(project_id, due_at=due_at, until=until) is None


async def test_a_release_never_raises_a_due_at_someone_lowered_meanwhile(
    store: ProjectStore, clock: Clock
) -> None:
    project = await created(store, 1)
    ((project_id, due_at),) = await store.due(before=NOW + timedelta(hours=1), limit=10)
    until = NOW + timedelta(hours=1, seconds=LEASE_S)
    assert await store.claim(project_id, due_at=due_at, until=until) is not None
    await store.expire_leases(project_id, {0: token(project, 0)})
    lowered = (await reread(store, project)).due_at

    await store.release(project_id, claimed=until, due_at=until)

    assert (await reread(store, project)).due_at == lowered


async def test_a_rearm_takes_the_clip_only_as_it_was_read(store: ProjectStore) -> None:
    project = await created(store, 1)
    clip = project.clips[0]
    until = NOW + timedelta(hours=1)

    first = await store.rearm(project.id, clip, token="fresh-1", until=until)
    second = await store.rearm(project.id, clip, token="fresh-2", until=until)

    assert (first, second) == (True, False)
    lease = (await reread(store, project)).clips[0].lease
    assert lease is not None
    assert lease.token == "fresh-1"


# --- project operations ------------------------------------------------------------------


async def test_cancel_stops_every_unfinished_clip_and_finishes_the_project(
    store: ProjectStore,
) -> None:
    project = await created(store, 3)
    await succeed(store, project, 0)

    outcome = await store.cancel(project.id, tenant_id="tenant-a")
    again = await store.cancel(project.id, tenant_id="tenant-a")

    assert outcome is not None
    cancelled = outcome.project
    assert [clip.status for clip in cancelled.clips] == ["success", "cancelled", "cancelled"]
    assert [e.message_type for e in outcome.events] == [
        "clip.updated",
        "clip.updated",
        "project.finished",
    ]
    assert [e.seq for e in outcome.events] == [2, 3, 4]
    assert cancelled.status is ProjectStatus.CANCELLED  # though one clip did finish
    assert again is not None
    assert (again.project, again.events) == (cancelled, [])
    assert await store.cancel(project.id, tenant_id="tenant-b") is None
    # Cancelling does not stop Runware: a video that comes anyway is billed, and recorded
    # as an attempt of the cancelled clip, which stays cancelled (no second finish).
    late = await succeed(store, project, 1)
    assert [e.message_type for e in late.events] == ["clip.attempt_succeeded"]
    after = await reread(store, project)
    assert (after.status, after.clips[1].status) == (ProjectStatus.CANCELLED, "cancelled")
    assert after.clips[1].attempts[after.clips[1].task_uuid].status is ClipStatus.SUCCESS


async def test_retry_gives_a_runware_failed_clip_a_new_task_and_keeps_the_old_one(
    store: ProjectStore,
) -> None:
    project = await created(store, 2)
    await succeed(store, project, 0)
    await fail(store, project, 1, code="contentPolicyViolation")
    failed_task = project.clips[1].task_uuid

    outcome = await store.retry(project.id, tenant_id="tenant-a")

    assert outcome is not None
    assert (outcome.resubmit, outcome.rewatch) == ([1], [])
    retried = outcome.project
    new_clip = retried.clips[1]
    assert new_clip.task_uuid != failed_task
    assert (new_clip.scene_index, new_clip.status) == (1, ClipStatus.QUEUED)
    assert new_clip.lease is not None
    assert retried.requests is not None  # for the SubmitClip the caller sends
    (earlier,) = new_clip.attempts.values()
    assert list(new_clip.attempts) == [failed_task]
    assert (earlier.status, earlier.error) == (
        ClipStatus.FAILED,
        {"code": "contentPolicyViolation", "message": "boom"},
    )
    assert (retried.status, retried.finished_at) == ("generating", None)
    assert retried.counts == Counts(total_clips=2, completed=1, pending=1, failed=0)
    (event,) = outcome.events
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.replaces_task_uuid, event.clip.task_uuid) == (
        4,
        failed_task,
        new_clip.task_uuid,
    )
    status = retried.public_status().wire()
    assert failed_task not in status["clips"]
    assert status["clips"][new_clip.task_uuid] == "pending"
    assert status["results"][1]["attempts"][0]["task_uuid"] == failed_task
    assert await store.retry(project.id, tenant_id="tenant-b") is None
    nothing = await store.retry(project.id, tenant_id="tenant-a")
    assert nothing is not None
    assert (nothing.events, nothing.resubmit) == ([], [])


async def test_retry_of_a_timed_out_clip_watches_the_same_task_again(store: ProjectStore) -> None:
    project = await created(store, 1)
    await processing(store, project, 0)
    await fail(store, project, 0, code=TIMED_OUT)

    outcome = await store.retry(project.id, tenant_id="tenant-a")

    assert outcome is not None
    assert (outcome.resubmit, outcome.rewatch) == ([], [0])
    clip = outcome.project.clips[0]
    assert (clip.task_uuid, clip.status, clip.error) == (
        project.clips[0].task_uuid,
        ClipStatus.PROCESSING,
        None,
    )
    assert clip.attempts == {}
    assert clip.lease is not None
    assert clip.watched_since is not None
    assert clip.submitted_at is not None
    assert clip.watched_since > clip.submitted_at  # a fresh ceiling
    assert outcome.project.status is ProjectStatus.GENERATING


async def test_cancelled_clips_are_not_retried(store: ProjectStore) -> None:
    project = await created(store, 1)
    await store.cancel(project.id, tenant_id="tenant-a")

    outcome = await store.retry(project.id, tenant_id="tenant-a")

    assert outcome is not None
    assert (outcome.events, outcome.resubmit, outcome.rewatch) == ([], [], [])


async def test_a_late_success_of_an_earlier_attempt_becomes_the_clips_video(
    store: ProjectStore,
) -> None:
    project = await created(store, 1)
    first_task = project.clips[0].task_uuid
    await fail(store, project, 0, code="taskFailedOrNotFound")
    retried = await store.retry(project.id, tenant_id="tenant-a")
    assert retried is not None
    second = retried.project
    second_task = second.clips[0].task_uuid
    await processing(store, second, 0)

    late: Change = await store.record(
        project.id,
        0,
        first_task,
        TaskSucceeded(video_url="https://v/late.mp4", video_uuid="late", cost=0.4),
    )

    assert late.applied
    clip = (await reread(store, project)).clips[0]
    assert (clip.task_uuid, clip.status, clip.video_url) == (
        first_task,
        ClipStatus.SUCCESS,
        "https://v/late.mp4",
    )
    assert clip.attempts[second_task].status is ClipStatus.PROCESSING
    updated, finished = late.events
    assert isinstance(updated, ClipUpdated)
    assert updated.replaces_task_uuid == second_task
    assert isinstance(finished, ProjectFinished)
    assert finished.status is ProjectStatus.COMPLETED

    # The task that kept running ends later: recorded in its attempt, the clip unchanged.
    ended: Change = await store.record(
        project.id,
        0,
        second_task,
        TaskSucceeded(video_url="https://v/second.mp4", video_uuid="second", cost=0.4),
    )

    after = await reread(store, project)
    # Billed too: told in one clip.attempt_succeeded, no status or count moves.
    (told,) = ended.events
    assert isinstance(told, AttemptSucceeded)
    assert (told.seq, told.attempt.task_uuid, told.attempt.cost) == (
        finished.seq + 1,
        second_task,
        0.4,
    )
    assert told.counts == finished.counts
    assert after.clips[0].video_url == "https://v/late.mp4"
    assert after.clips[0].attempts[second_task].status is ClipStatus.SUCCESS
    assert after.clips[0].attempts[second_task].video_url == "https://v/second.mp4"
    assert after.cost.known == 2
    assert after.cost.usd == pytest.approx(0.8)
    assert (after.seq, after.status) == (told.seq, ProjectStatus.COMPLETED)


async def test_a_takeover_of_a_replaced_queued_task_hands_its_attempt_to_the_new_chain(
    store: ProjectStore, mongo_db: Database
) -> None:
    """The reconciler read a queued clip whose task Runware holds; before it took the chain
    over, an earlier task's video replaced that task. The takeover goes on under the
    attempt: its lease is the new chain's, and the old chain's renewal matches nothing."""
    project = await created(store, 1)
    first_task = project.clips[0].task_uuid
    await fail(store, project, 0, code="taskFailedOrNotFound")
    retried = await store.retry(project.id, tenant_id="tenant-a")
    assert retried is not None
    second_task = retried.project.clips[0].task_uuid
    old = retried.project.clips[0].lease
    assert old is not None
    late = TaskSucceeded(video_url="https://v/late.mp4", video_uuid="late", cost=0.4)
    assert (await store.record(project.id, 0, first_task, late)).applied
    assert (await raw(mongo_db, project.id))["attempts_due_at"] is not None  # looked after

    taken = await store.mark_processing(
        project.id, 0, second_task, token=old.token, new_token="fresh"
    )

    assert taken.applied
    attempt = (await reread(store, project)).clips[0].attempts[second_task]
    assert attempt.status is ClipStatus.PROCESSING
    assert attempt.lease is not None
    assert (attempt.lease.token, attempt.lease.until) == ("fresh", taken.lease_until)
    later = attempt.lease.until + timedelta(seconds=LEASE_S)
    renew = functools.partial(
        store.renew_lease, project.id, 0, until_was=attempt.lease.until, until=later
    )
    assert not await renew(token=old.token, task_uuid=second_task)
    assert await renew(token="fresh", task_uuid=second_task)


@pytest.mark.parametrize("timed_out", [False, True])
async def test_a_late_video_after_the_project_finished_changes_no_status_and_a_retry_takes_it(
    store: ProjectStore, timed_out: bool
) -> None:
    """The tenant paid for it: its video and cost show, the project does not finish again.

    ``timed_out``: the clip's own task, given up on by our ceiling; else an earlier task
    of a clip whose retry failed too.
    """
    project = await created(store, 1)
    late_task = project.clips[0].task_uuid
    if timed_out:
        await fail(store, project, 0, code=TIMED_OUT)
    else:
        await fail(store, project, 0, code="taskFailedOrNotFound")
        retried = await store.retry(project.id, tenant_id="tenant-a")
        assert retried is not None
        await fail(store, retried.project, 0, code="contentPolicyViolation")
    finished = await reread(store, project)
    assert finished.status is ProjectStatus.FAILED
    video = TaskSucceeded(video_url="https://v/late.mp4", cost=0.4)

    late: Change = await store.record(project.id, 0, late_task, video)
    again: Change = await store.record(project.id, 0, late_task, video)  # a duplicate

    after = await reread(store, project)
    assert (after.status, after.counts, after.finished_at) == (
        ProjectStatus.FAILED,
        finished.counts,
        finished.finished_at,
    )
    clip = after.clips[0]
    assert (clip.task_uuid, clip.status) == (finished.clips[0].task_uuid, ClipStatus.FAILED)
    assert clip.attempts[late_task].status is ClipStatus.SUCCESS
    assert clip.attempts[late_task].video_url == "https://v/late.mp4"
    assert after.cost.usd == pytest.approx(0.4)
    assert after.cost.known == 1
    (told,) = late.events
    assert isinstance(told, AttemptSucceeded)
    assert told.seq == finished.seq + 1 == after.seq
    assert (told.scene_index, told.attempt.task_uuid, told.attempt.cost) == (0, late_task, 0.4)
    assert not again.applied
    assert told in again.events  # a duplicate repeats what was told, adds nothing
    assert max(e.seq for e in again.events) == after.seq

    # The tenant retries the failed scene: it takes the video, nothing is bought.
    outcome = await store.retry(project.id, tenant_id="tenant-a")

    assert outcome is not None
    assert (outcome.resubmit, outcome.rewatch) == ([], [])
    taken = outcome.project
    assert (taken.clips[0].task_uuid, taken.clips[0].status, taken.clips[0].video_url) == (
        late_task,
        ClipStatus.SUCCESS,
        "https://v/late.mp4",
    )
    assert taken.status is ProjectStatus.COMPLETED
    assert taken.cost == after.cost  # billed once
    assert [e.message_type for e in outcome.events] == ["clip.updated", "project.finished"]


async def test_a_retry_that_takes_one_late_video_and_buys_another_task_finishes_once_later(
    store: ProjectStore,
) -> None:
    project = await created(store, 2)
    await fail(store, project, 0, code=TIMED_OUT)
    await fail(store, project, 1, code="contentPolicyViolation")
    video = TaskSucceeded(video_url="https://v/late.mp4", cost=0.4)
    await store.record(project.id, 0, project.clips[0].task_uuid, video)

    outcome = await store.retry(project.id, tenant_id="tenant-a")

    assert outcome is not None
    assert (outcome.resubmit, outcome.rewatch) == ([1], [])
    assert [e.message_type for e in outcome.events] == ["clip.updated", "clip.updated"]
    assert outcome.project.status is ProjectStatus.GENERATING
    assert [clip.status for clip in outcome.project.clips] == [
        ClipStatus.SUCCESS,
        ClipStatus.QUEUED,
    ]


async def late_videos_of_timed_out_clips(store: ProjectStore) -> Project:
    """A finished (failed) two-scene project whose clips both timed out, each with its task's
    video come late: what a retry takes."""
    project = await created(store, 2)
    for index in (0, 1):
        await fail(store, project, index, code=TIMED_OUT)
        video = TaskSucceeded(video_url=f"https://v/late{index}.mp4", cost=0.4)
        await store.record(project.id, index, project.clips[index].task_uuid, video)
    return await reread(store, project)


async def test_a_retry_that_takes_several_late_videos_finishes_the_project_once(
    store: ProjectStore,
) -> None:
    before = await late_videos_of_timed_out_clips(store)
    assert before.status is ProjectStatus.FAILED

    outcome = await store.retry(before.id, tenant_id="tenant-a")

    assert outcome is not None
    assert [e.message_type for e in outcome.events] == [
        "clip.updated",
        "clip.updated",
        "project.finished",
    ]
    assert [e.seq for e in outcome.events] == [before.seq + 1, before.seq + 2, before.seq + 3]
    finished = outcome.events[-1]
    assert isinstance(finished, ProjectFinished)
    assert finished.status is ProjectStatus.COMPLETED
    assert outcome.project.status is ProjectStatus.COMPLETED
    assert outcome.project.seq == before.seq + 3


async def test_a_retry_that_dies_after_taking_late_videos_is_finished_by_the_reconciler(
    store: ProjectStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await late_videos_of_timed_out_clips(store)

    async def crash(*_args: Any) -> list[Any]:
        raise ConnectionError("the API died before the finish")

    monkeypatch.setattr(store, "_finish_if_done", crash)
    with pytest.raises(ConnectionError):
        await store.retry(before.id, tenant_id="tenant-a")
    monkeypatch.undo()

    assert (await reread(store, before)).clips[0].status is ClipStatus.SUCCESS  # taken
    # What the reconciler does: a generating project past its due_at, claimed and finished.
    due = await store.due(before=clock.now + timedelta(seconds=LEASE_S + 1), limit=10)
    assert [project_id for project_id, _ in due] == [before.id]
    (_, due_at) = due[0]
    claimed = await store.claim(before.id, due_at=due_at, until=clock.now + timedelta(minutes=1))
    assert claimed is not None
    (finished,) = await store.finish_if_done(claimed)
    assert isinstance(finished, ProjectFinished)
    assert (finished.status, finished.seq) == (ProjectStatus.COMPLETED, before.seq + 3)
    assert (await reread(store, before)).status is ProjectStatus.COMPLETED


# --- the event log -----------------------------------------------------------------------


async def test_events_replay_after_a_seq_until_the_log_has_dropped_them(
    mongo_db: Database,
) -> None:
    store = ProjectStore(mongo_db, event_log_size=3, clock=utcnow)
    project = await created(store, 3)
    for index in range(3):
        await processing(store, project, index)
    for index in range(3):
        await succeed(store, project, index)  # seq 4..6, then project.finished at 7

    replayed = await store.events_after(project.id, 4)
    assert [e.seq for e in replayed or []] == [5, 6, 7]
    assert [e.counts.completed for e in replayed or []] == [2, 3, 3]
    assert await store.events_after(project.id, 7) == []
    assert await store.events_after(project.id, 3) is None
    assert await store.events_after(project.id, 8) is None
    assert await store.events_after("no-such-project", 0) is None


async def test_public_status_of_a_stored_project_matches_the_seed_shape(
    store: ProjectStore,
) -> None:
    project = await created(store, 2)
    await succeed(store, project, 0)
    stored = await reread(store, project)

    status = stored.public_status().wire()

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
    assert status["cost"] == {"usd": 0.1, "known": 1, "unknown": 0}
    assert status["updated_at"] > status["created_at"]


async def test_a_chain_that_renewed_after_the_read_keeps_its_clip(store: ProjectStore) -> None:
    project = await created(store, 1)
    clip = project.clips[0]
    assert clip.lease is not None
    later = NOW + timedelta(hours=1)
    await store.renew_lease(
        project.id, 0, token=clip.lease.token, until_was=clip.lease.until, until=later
    )

    assert not await store.rearm(project.id, clip, token="fresh", until=later)


class _Overtaken:
    """The store's ``projects`` collection as seen by a writer that a concurrent one overtakes
    every time: each guarded ``update_one`` matches nothing; reads are the real ones."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def update_one(self, *_args: Any, **_kwargs: Any) -> UpdateResult:
        self.misses += 1
        return UpdateResult({"n": 0, "nModified": 0, "ok": 1}, acknowledged=True)


async def test_a_follow_overtaken_at_every_read_is_retried_later_not_dropped(
    store: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runware took a cancelled clip's task: its follow is read, then written guarded on the
    read. Overtaken at every try, the follow must not look like "nothing to follow" (the
    chain would stop following a task Runware bills): the message is retried later."""
    project = await created(store, 1)
    task_uuid = project.clips[0].task_uuid
    assert await store.cancel(project.id, tenant_id="tenant-a") is not None
    overtaken = _Overtaken(store._projects)
    monkeypatch.setattr(store, "_projects", overtaken)

    with pytest.raises(TransientError, match=project.id) as raised:
        await store.follow_given_up(project.id, 0, task_uuid)

    assert "scene 0" in str(raised.value)
    assert overtaken.misses == REREAD_ATTEMPTS
    monkeypatch.undo()  # the contention is over: the retried follow takes the task
    assert await store.follow_given_up(project.id, 0, task_uuid) is not None


async def test_a_stale_chains_submit_of_a_replaced_task_changes_nothing_and_is_not_retried(
    store: ProjectStore,
) -> None:
    """A chain a re-arm replaced (its token no longer the attempt's) got a task that an
    earlier task's video replaced to Runware: the chain holding the attempt's lease follows
    it. Not contention: the stale chain stops (no change, no retry)."""
    project = await created(store, 1)
    first_task = project.clips[0].task_uuid
    await fail(store, project, 0, code="taskFailedOrNotFound")
    retried = await store.retry(project.id, tenant_id="tenant-a")
    assert retried is not None
    second_task = retried.project.clips[0].task_uuid
    late = TaskSucceeded(video_url="https://v/late.mp4", video_uuid="late", cost=0.4)
    assert (await store.record(project.id, 0, first_task, late)).applied
    before = (await reread(store, project)).clips[0].attempts[second_task]

    stale = await store.mark_processing(project.id, 0, second_task, token="re-armed-away")

    assert (stale.applied, stale.events, stale.given_up) == (False, [], False)
    assert (await reread(store, project)).clips[0].attempts[second_task] == before
