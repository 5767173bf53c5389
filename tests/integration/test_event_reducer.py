"""A client that keeps a project from a snapshot and the events after it, by docs/API.md's rule,
holds what ``GET /v1/projects/{project_id}`` shows after every change, on a real database.

The rule (API.md, "Keeping a project from its events"): each event's ``counts`` and ``cost``
replace the project's; a ``clip.updated``'s ``clip`` replaces the scene's clip, keeping the
``attempts`` held when it carries none; a ``clip.attempt_succeeded``'s ``attempt`` replaces
the scene's attempt of its task (or joins them); ``clip.stored`` / ``clip.attempt_stored``
set ``stored_url`` on the clip / attempt of their task; ``project.finished`` says the status.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_common.domain import ClipRequest, ClipStatus, ProjectStatus
from reelflow_common.messages import ClipUpdated, Event
from reelflow_common.mongo import Database
from reelflow_common.storage.links import VideoLinks
from reelflow_common.store import TIMED_OUT, NewProject, Project, ProjectStore
from reelflow_notifier.wire import event_message
from tests.builders import failure, video

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
COUNTS = ("total_clips", "completed", "pending", "failed", "cancelled")


class Clock:
    """A clock the test moves by hand, one millisecond per reading so ordering is strict."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def reduce(project: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The project after one event, by the documented rule (a snapshot replaces it whole)."""
    if message["type"] == "snapshot":
        return copy.deepcopy(message["project"])
    project = copy.deepcopy(project)
    project["seq"] = message["seq"]
    project |= {name: message["counts"][name] for name in COUNTS}
    if "cost" in message:
        project["cost"] = message["cost"]
    results = project["results"]
    kind = message["type"]
    if kind == "clip.updated":
        clip = message["clip"]
        held = results[clip["scene_index"]]
        if "attempts" not in clip and "attempts" in held:
            clip = clip | {"attempts": held["attempts"]}
        results[clip["scene_index"]] = clip
    elif kind == "clip.attempt_succeeded":
        attempt = message["attempt"]
        held = results[message["scene_index"]].setdefault("attempts", [])
        found = [i for i, known in enumerate(held) if known["task_uuid"] == attempt["task_uuid"]]
        if found:
            held[found[0]] = attempt
        else:
            held.append(attempt)
    elif kind == "clip.stored":
        clip = results[message["scene_index"]]
        if clip["task_uuid"] == message["task_uuid"]:
            clip["stored_url"] = message["stored_url"]
    elif kind == "clip.attempt_stored":
        for attempt in results[message["scene_index"]].get("attempts", []):
            if attempt["task_uuid"] == message["task_uuid"]:
                attempt["stored_url"] = message["stored_url"]
    if kind == "project.finished":
        project["status"] = message["status"]
    elif project["pending"]:
        project["status"] = ProjectStatus.GENERATING.value
    return project


def shown(project: dict[str, Any]) -> dict[str, Any]:
    """What is compared: the clips (``attempts: []`` is none), the counts, the cost, the status."""
    results = [
        {name: value for name, value in clip.items() if value != [] or name != "attempts"}
        for clip in project["results"]
    ]
    return {
        "results": results,
        "cost": project["cost"],
        "status": project["status"],
        **{name: project[name] for name in COUNTS},
    }


class Follower:
    """A client holding the project from a snapshot, fed every event the writers made."""

    def __init__(self, store: ProjectStore, links: VideoLinks, project: Project) -> None:
        self.store = store
        self.links = links
        self.id = project.id
        self.held = reduce({}, {"type": "snapshot", "project": self.status(project)})
        self.seq = project.seq
        self.events: list[Event] = []

    def status(self, project: Project) -> dict[str, Any]:
        wire: dict[str, Any] = project.public_status(include_results=True, links=self.links).wire()
        return wire

    async def got(self, events: list[Event]) -> dict[str, Any]:
        """Apply the events of one change; what a read shows then must be what is held."""
        for event in events:
            assert event.seq == self.seq + 1  # gap-free
            self.seq = event.seq
            self.events.append(event)
            self.held = reduce(self.held, event_message(event))
        found = await self.store.get(self.id)
        assert found is not None
        assert shown(self.held) == shown(self.status(found))
        return self.held


async def test_a_client_replacing_what_each_event_carries_holds_what_a_read_shows(
    mongo_db: Database,
) -> None:
    clock = Clock()
    # A fixed clock: a URL signed for an event is the one a read signs.
    links = VideoLinks(b"secret", ttl_s=3600, clock=lambda: NOW)
    store = ProjectStore(mongo_db, clock=clock, lease_s=600, links=links)
    new = NewProject(
        tenant_id="tenant-a",
        title="every change",
        model="google:3@3",
        scenes=[ClipRequest(prompt=f"scene {i}") for i in range(5)],
    )
    project = (await store.create(new)).project
    tasks = [clip.task_uuid for clip in project.clips]
    client = Follower(store, links, project)

    async def processing(scene: int, task_uuid: str | None = None) -> datetime:
        clip = (await store.get(project.id)).clips[scene]  # type: ignore[union-attr]
        assert clip.lease is not None
        change = await store.mark_processing(
            project.id, scene, task_uuid or clip.task_uuid, token=clip.lease.token
        )
        await client.got(change.events)
        assert change.at is not None
        return change.at

    async def progress(scene: int, task_uuid: str, value: int, submitted_at: datetime) -> None:
        change = await store.record_progress(
            project.id, scene, task_uuid, value, submitted_at=submitted_at
        )
        await client.got(change.events)

    async def stored(scene: int, task_uuid: str) -> None:
        key = f"videos/{project.id}/{scene}/{task_uuid}.mp4"
        change = await store.record_stored(
            project.id,
            scene,
            task_uuid,
            key=key,
            size_bytes=100,
            sha256=None,
            content_type="video/mp4",
            stored_url=links.url(key),
        )
        assert change.applied
        await client.got(change.events)

    # A clip processing, its progress, its success: no "74%" left on it.
    at = await processing(0)
    await progress(0, tasks[0], 30, at)
    await progress(0, tasks[0], 74, at)
    done = await client.got(
        (await store.record(project.id, 0, tasks[0], video("a", 0.1), submitted_at=at)).events
    )
    assert "progress" not in done["results"][0]
    await stored(0, tasks[0])

    # A clip Runware fails; the retry's new task, queued: no error, its attempts held.
    at = await processing(1)
    await progress(1, tasks[1], 50, at)
    await client.got(
        (
            await store.record(
                project.id, 1, tasks[1], failure("contentPolicyViolation"), submitted_at=at
            )
        ).events
    )
    # A clip that times out with its progress, another that waits for Runware.
    at2 = await processing(2)
    await client.got(
        (await store.record(project.id, 2, tasks[2], failure(TIMED_OUT), submitted_at=at2)).events
    )
    at3 = await processing(3)
    await progress(3, tasks[3], 25, at3)
    await client.got(
        (await store.record(project.id, 3, tasks[3], failure(TIMED_OUT), submitted_at=at3)).events
    )
    queued = (await store.get(project.id)).clips[4]  # type: ignore[union-attr]
    assert queued.lease is not None
    waits = {"code": "runwareUnavailable", "message": "503"}
    await client.got(
        (
            await store.record_waiting(project.id, 4, tasks[4], waits, token=queued.lease.token)
        ).events
    )

    # The clip's own task (timed out on our side) delivers after all: billed, kept, stored.
    await client.got((await store.record(project.id, 2, tasks[2], video("c", 0.2))).events)
    await stored(2, tasks[2])

    retried = await store.retry(project.id, tenant_id="tenant-a")
    assert retried is not None
    held = await client.got(retried.events)
    requeued = next(
        e for e in retried.events if isinstance(e, ClipUpdated) and e.clip.scene_index == 1
    )
    assert requeued.clip.status is ClipStatus.QUEUED
    assert requeued.clip.error is None
    assert [a.task_uuid for a in requeued.clip.attempts or []] == [tasks[1]]
    assert held["results"][1]["attempts"][0]["error"]["code"] == "contentPolicyViolation"
    # The timed-out clip took its own late video, and its copy.
    assert held["results"][2]["stored_url"] == links.url(f"videos/{project.id}/2/{tasks[2]}.mp4")
    # The other is watched again, its progress as a read shows it.
    assert held["results"][3]["progress"] == 25

    # The retry's task runs; the first task's video comes after all: the clip takes it, the
    # running task joins the attempts, which then ends with a video of its own (billed too).
    new_task = retried.project.clips[1].task_uuid
    await processing(1, new_task)
    held = await client.got((await store.record(project.id, 1, tasks[1], video("b", 0.2))).events)
    assert held["results"][1]["task_uuid"] == tasks[1]
    assert [a["task_uuid"] for a in held["results"][1]["attempts"]] == [new_task]
    await client.got((await store.record(project.id, 1, new_task, video("b2", None))).events)
    await stored(1, new_task)

    # The watched clip ends, recorded by its chain (its message carries the submit).
    rewatched = await store.record(project.id, 3, tasks[3], video("d", 0.3), submitted_at=at3)
    await client.got(rewatched.events)
    cancelled = await store.cancel(project.id, tenant_id="tenant-a")
    assert cancelled is not None
    held = await client.got(cancelled.events)
    assert held["status"] == ProjectStatus.CANCELLED.value
    assert held["cost"] == {"usd": 0.8, "known": 4, "unknown": 1}

    # A reconnect that replays the log is sent the same messages, cost and all.
    replayed = await store.events_after(project.id, 0)
    assert replayed is not None
    assert [event_message(e) for e in replayed] == [event_message(e) for e in client.events]
