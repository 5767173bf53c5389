"""The notifier against a real RabbitMQ and MongoDB, through real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
import structlog
from websockets.exceptions import InvalidStatus

from reelflow_common.broker import Publisher, amqp_channel
from reelflow_common.domain import ClipRequest, ProjectStatus
from reelflow_common.logging import configure_logging
from reelflow_common.messages import AttemptSucceeded, Event
from reelflow_common.settings import LogSettings
from reelflow_common.store import (
    TIMED_OUT,
    ApiKeyStore,
    NewProject,
    Project,
    ProjectStore,
    TaskFailed,
    TaskSucceeded,
)
from reelflow_common.store.auth import key_id
from reelflow_common.topology import HEADER_PROJECT_ID, Topology
from reelflow_notifier import bindings as bindings_module
from reelflow_notifier.bindings import ProjectBindings
from reelflow_notifier.settings import Settings
from tests.integration.notifier_helpers import (
    RunningNotifier,
    client,
    close_of,
    metric,
    receive,
    running_notifier,
)
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration


@dataclass
class World:
    """A tenant with a key, the stores, and a publisher on the test's event exchange."""

    projects: ProjectStore
    api_keys: ApiKeyStore
    publisher: Publisher
    tenant_id: str
    key: str

    async def new_project(self, clips: int = 2, *, tenant_id: str | None = None) -> Project:
        new = NewProject(
            tenant_id=tenant_id or self.tenant_id,
            title="Trip to Lisbon",
            model="google:3@3",
            scenes=[ClipRequest(prompt=f"scene {n}") for n in range(clips)],
        )
        return (await self.projects.create(new)).project

    async def processing(
        self, project: Project, index: int, *, projects: ProjectStore | None = None
    ) -> list[Event]:
        clip = project.clips[index]
        assert clip.lease is not None
        change = await (projects or self.projects).mark_processing(
            project.id, index, clip.task_uuid, token=clip.lease.token
        )
        return change.events

    async def success(self, project: Project, index: int) -> list[Event]:
        task_uuid = project.clips[index].task_uuid
        video = TaskSucceeded(video_url=f"https://cdn.example/{task_uuid}.mp4", cost=0.12)
        return (await self.projects.record(project.id, index, task_uuid, video)).events

    async def fail(self, project_id: str, task_uuid: str, code: str) -> None:
        failure = TaskFailed(code=code, message="given up")
        await self.publish(*(await self.projects.record(project_id, 0, task_uuid, failure)).events)

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.publisher.publish_event(event)


@pytest.fixture
def settings(settings_for: Callable[..., Any]) -> Settings:
    settings: Settings = settings_for(Settings, http_host="127.0.0.1", http_port=0)
    return settings


@pytest.fixture
async def notifier(settings: Settings, amqp_connection: Any) -> AsyncIterator[RunningNotifier]:
    # Depends on ``amqp_connection`` so that it stops first: that fixture's clean-up
    # deletes the test's queues, and this replica's exclusive queue is locked while it runs.
    async with running_notifier(settings) as running:
        yield running


@pytest.fixture
async def world(
    settings: Settings, mongo_db: Any, amqp_connection: Any, notifier: RunningNotifier
) -> AsyncIterator[World]:
    # Depends on ``notifier``: its start declares the event exchange published to here.
    api_keys = ApiKeyStore(mongo_db)
    tenant_id = await api_keys.create_tenant("acme")
    key = await api_keys.issue_key(tenant_id)
    async with amqp_channel(amqp_connection) as channel:
        publisher = Publisher(channel, Topology.from_settings(settings), timeout_s=DEADLINE_S)
        yield World(ProjectStore(mongo_db), api_keys, publisher, tenant_id, key)


def project_url(notifier: RunningNotifier, project: Project, query: str = "") -> str:
    return f"{notifier.base_url}/v1/ws/projects/{project.id}{query}"


# --- one project ---------------------------------------------------------------------


async def test_snapshot_then_each_change_in_seq_order(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project(clips=2)
    async with client(project_url(notifier, project), key=world.key) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["seq"] == 0
        assert snapshot["project"]["project_id"] == project.id
        assert snapshot["project"]["pending"] == 2
        assert [r["status"] for r in snapshot["project"]["results"]] == ["queued", "queued"]

        await world.publish(*await world.processing(project, 0))
        await world.publish(*await world.success(project, 0))
        await world.publish(*await world.success(project, 1))

        first, second, third, finished = [await receive(ws) for _ in range(4)]

    assert first == {
        "type": "clip.updated",
        "seq": 1,
        "project_id": project.id,
        "clip": {
            "task_uuid": project.clips[0].task_uuid,
            "scene_index": 0,
            "status": "processing",
            "submitted_at": first["clip"]["submitted_at"],
        },
        "counts": {"total_clips": 2, "completed": 0, "pending": 2, "failed": 0, "cancelled": 0},
        "cost": {"usd": 0.0, "known": 0, "unknown": 0},
    }
    assert (second["seq"], second["clip"]["status"]) == (2, "success")
    assert second["clip"]["video_url"] == f"https://cdn.example/{project.clips[0].task_uuid}.mp4"
    assert second["counts"] == {
        "total_clips": 2,
        "completed": 1,
        "pending": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert (third["seq"], third["clip"]["scene_index"]) == (3, 1)
    assert finished == {
        "type": "project.finished",
        "seq": 4,
        "project_id": project.id,
        "status": "completed",
        "counts": {"total_clips": 2, "completed": 2, "pending": 0, "failed": 0, "cancelled": 0},
        "cost": third["cost"],
    }
    # The project's cost after each change, as its status says it then.
    assert [m["cost"]["known"] for m in (first, second, third)] == [0, 1, 2]
    assert not {"message_id", "occurred_at", "tenant_id", "schema_version"} & set(second)


@pytest.mark.parametrize("own_task", [True, False], ids=["timed-out task", "replaced task"])
async def test_a_late_video_after_the_finish_is_one_attempt_succeeded_and_a_retry_takes_it(
    notifier: RunningNotifier, world: World, own_task: bool
) -> None:
    """What a client sees of a video Runware billed after the project finished: the clip
    stays failed, no second ``project.finished``; its cost and video show; a retry uses it."""
    project = await world.new_project(clips=1)
    late_task = project.clips[0].task_uuid
    await world.processing(project, 0)
    if own_task:  # our ceiling gave the task up; Runware had it all along
        await world.fail(project.id, late_task, TIMED_OUT)
    else:  # reported not found, retried, and the retry's task failed too
        await world.fail(project.id, late_task, "taskFailedOrNotFound")
        retried = await world.projects.retry(project.id, tenant_id=world.tenant_id)
        assert retried is not None
        await world.fail(project.id, retried.project.clips[0].task_uuid, "contentPolicyViolation")
    finished = await world.projects.get(project.id)
    assert finished is not None
    assert finished.status is ProjectStatus.FAILED
    clip_task = finished.clips[0].task_uuid
    video = TaskSucceeded(video_url="https://cdn.example/late.mp4", cost=0.4)

    async with client(project_url(notifier, project), key=world.key) as ws:
        assert (await receive(ws))["seq"] == finished.seq
        late = await world.projects.record(project.id, 0, late_task, video)
        again = await world.projects.record(project.id, 0, late_task, video)  # a duplicate
        await world.publish(*late.events, *again.events)
        told = await receive(ws)
        outcome = await world.projects.retry(project.id, tenant_id=world.tenant_id)
        assert outcome is not None
        await world.publish(*outcome.events)
        taken, refinished = await receive(ws), await receive(ws)
    async with client(project_url(notifier, project, f"?after_seq={told['seq'] - 1}"),
                      key=world.key) as ws:  # fmt: skip
        replayed = await receive(ws)

    failed = {"total_clips": 1, "completed": 0, "pending": 0, "failed": 1, "cancelled": 0}
    assert told == {
        "type": "clip.attempt_succeeded",
        "seq": finished.seq + 1,
        "project_id": project.id,
        "scene_index": 0,
        "attempt": {
            "task_uuid": late_task,
            "status": "success",
            "video_url": "https://cdn.example/late.mp4",
            "cost": 0.4,
            "submitted_at": told["attempt"]["submitted_at"],
            "completed_at": told["attempt"]["completed_at"],
        },
        "counts": failed,
        "cost": {"usd": 0.4, "known": 1, "unknown": 0},
    }
    assert replayed == told
    # The next change is the retry's: no second project.finished came in between.
    assert (taken["type"], taken["seq"], taken["clip"]["status"]) == (
        "clip.updated",
        told["seq"] + 1,
        "success",
    )
    assert taken["clip"]["task_uuid"] == late_task
    assert taken.get("replaces_task_uuid") == (None if own_task else clip_task)
    # The clip as a read shows it: the failed task among its attempts, the late one gone.
    assert [a["task_uuid"] for a in taken["clip"]["attempts"]] == ([] if own_task else [clip_task])
    assert taken["cost"] == refinished["cost"] == told["cost"]
    assert (refinished["type"], refinished["status"]) == ("project.finished", "completed")
    # Billed once: the retry bought nothing and counted nothing again.
    assert isinstance(late.events[0], AttemptSucceeded)
    after = await world.projects.get(project.id)
    assert after is not None
    assert after.cost.usd == pytest.approx(0.4)
    assert after.cost.known == 1
    assert after.public_status().wire()["clips"] == {late_task: "https://cdn.example/late.mp4"}


async def test_a_failed_clips_late_video_shows_in_the_snapshot_with_its_cost(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project(clips=1)
    task = project.clips[0].task_uuid
    await world.processing(project, 0)
    await world.fail(project.id, task, TIMED_OUT)
    video = TaskSucceeded(video_url="https://cdn.example/late.mp4", cost=0.4)
    await world.projects.record(project.id, 0, task, video)

    async with client(project_url(notifier, project), key=world.key) as ws:
        snapshot = (await receive(ws))["project"]

    assert (snapshot["status"], snapshot["failed"], snapshot["clips"]) == (
        "failed",
        1,
        {task: "failed"},
    )
    assert snapshot["cost"] == {"usd": 0.4, "known": 1, "unknown": 0}
    (result,) = snapshot["results"]
    assert (result["status"], result["error"]["code"]) == ("failed", TIMED_OUT)
    assert [
        (a["task_uuid"], a["status"], a["video_url"], a["cost"]) for a in result["attempts"]
    ] == [(task, "success", "https://cdn.example/late.mp4", 0.4)]


async def test_a_duplicate_event_is_dropped(notifier: RunningNotifier, world: World) -> None:
    project = await world.new_project()
    async with client(project_url(notifier, project), key=world.key) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        events = await world.processing(project, 0)
        # Services publish again after a crash; the client must see the change once.
        await world.publish(*events, *events)
        await world.publish(*await world.processing(project, 1))

        assert [(await receive(ws))["seq"] for _ in range(2)] == [1, 2]


async def test_a_gap_is_filled_from_the_store(notifier: RunningNotifier, world: World) -> None:
    project = await world.new_project()
    async with client(project_url(notifier, project), key=world.key) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await world.processing(project, 0)  # stored, never published: lost on the way
        await world.publish(*await world.processing(project, 1))

        first, second = await receive(ws), await receive(ws)

    assert (first["seq"], first["clip"]["task_uuid"]) == (1, project.clips[0].task_uuid)
    assert (second["seq"], second["clip"]["task_uuid"]) == (2, project.clips[1].task_uuid)


async def test_an_unwatched_projects_events_never_reach_the_replica_and_a_later_watch_misses_none(
    notifier: RunningNotifier, world: World, amqp_connection: Any, settings: Settings
) -> None:
    watched = await world.new_project()
    later = await world.new_project()
    before = {outcome: fanout_outcome(outcome) for outcome in ("routed", "unwatched", "invalid")}
    async with client(project_url(notifier, watched), key=world.key) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # A publisher from before per-project routing keys (the type alone): every replica
        # gets its events; a body nothing could parse, of a project nobody watches here, is
        # acknowledged unread.
        async with amqp_channel(amqp_connection) as channel:
            events = await channel.get_exchange(
                Topology.from_settings(settings).events_exchange, ensure=False
            )
            await events.publish(
                aio_pika.Message(
                    b"{not json", type="clip.updated", headers={HEADER_PROJECT_ID: later.id}
                ),
                routing_key="clip.updated",
            )
        # The replica's queue is not bound to this project: the broker keeps it away.
        await world.publish(*await world.processing(later, 0))
        await world.publish(*await world.processing(watched, 0))
        # One queue, handled in order: what came before it was handled when this arrives.
        assert (await receive(ws))["seq"] == 1
        after = {outcome: fanout_outcome(outcome) for outcome in before}
        assert {outcome: after[outcome] - before[outcome] for outcome in before} == {
            "routed": 1,
            "unwatched": 1,  # the old publisher's, not `later`'s own
            "invalid": 0,
        }

        # Its unsent seq 1 is in the snapshot, read after the queue was bound to it.
        async with client(project_url(notifier, later), key=world.key) as late:
            snapshot = await receive(late)
            assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 1)
            await world.publish(*await world.processing(later, 1))
            await world.publish(*await world.success(later, 0))
            assert [(await receive(late))["seq"] for _ in range(2)] == [2, 3]

        await world.publish(*await world.processing(watched, 1))
        await world.publish(*await world.success(watched, 0))
        await world.publish(*await world.success(watched, 1))
        assert [(await receive(ws))["seq"] for _ in range(4)] == [2, 3, 4, 5]


async def test_a_watch_reads_its_snapshot_only_once_the_queue_is_bound_to_its_events(
    notifier: RunningNotifier, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.new_project()
    attempted, answer = asyncio.Event(), asyncio.Event()
    attempt = ProjectBindings._attempt

    async def slow_broker(bindings: ProjectBindings, call: Any, what: str, project_id: str) -> bool:
        if (what, project_id) == ("bind", project.id):
            attempted.set()
            await answer.wait()
        return await attempt(bindings, call, what, project_id)

    monkeypatch.setattr(ProjectBindings, "_attempt", slow_broker)
    # The sender would read anyway after WAIT_S (and catch up later): not within this test.
    monkeypatch.setattr(bindings_module, "WAIT_S", 10 * DEADLINE_S)
    async with client(project_url(notifier, project), key=world.key) as ws:
        await asyncio.wait_for(attempted.wait(), DEADLINE_S)
        # Stored and published while the bind is unconfirmed: the queue does not get it.
        await world.publish(*await world.processing(project, 0))
        answer.set()
        # So the snapshot is read after the bind, and holds it.
        snapshot = await receive(ws)
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 1)
        await world.publish(*await world.success(project, 0))
        assert (await receive(ws))["seq"] == 2


def fanout_outcome(outcome: str) -> float:
    return metric("reelflow_fanout_events_total", outcome=outcome)


async def test_reconnecting_with_after_seq_replays_the_missed_changes(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project()
    await world.processing(project, 0)
    await world.processing(project, 1)
    await world.success(project, 0)

    async with client(project_url(notifier, project, "?after_seq=1"), key=world.key) as ws:
        replayed = [await receive(ws) for _ in range(2)]
        await world.publish(*await world.success(project, 1))
        live = [await receive(ws) for _ in range(2)]

    assert [(m["type"], m["seq"]) for m in replayed] == [("clip.updated", 2), ("clip.updated", 3)]
    assert [(m["type"], m["seq"]) for m in live] == [("clip.updated", 4), ("project.finished", 5)]


async def test_after_seq_no_longer_replayable_gets_a_fresh_snapshot(
    notifier: RunningNotifier, world: World, mongo_db: Any
) -> None:
    short_log = ProjectStore(mongo_db, event_log_size=1)
    project = await world.new_project()
    for index in range(len(project.clips)):
        await world.processing(project, index, projects=short_log)

    async with client(project_url(notifier, project, "?after_seq=0"), key=world.key) as ws:
        snapshot = await receive(ws)

    assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 2)
    assert [r["status"] for r in snapshot["project"]["results"]] == ["processing", "processing"]


async def test_a_bad_after_seq_is_refused_with_4400(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project()
    async with client(project_url(notifier, project, "?after_seq=-1"), key=world.key) as ws:
        assert (await close_of(ws))[0] == 4400


# --- who may watch -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "rf_not-a-key"])
async def test_a_missing_or_unknown_key_is_refused_with_4401(
    notifier: RunningNotifier, world: World, key: str | None
) -> None:
    project = await world.new_project()
    with structlog.testing.capture_logs() as lines:
        async with client(project_url(notifier, project), key=key) as ws:
            code, reason = await close_of(ws)
    assert code == 4401
    assert "API key" in reason
    # Logged, by the key's id (as key list shows ids), never the key.
    (refused,) = [line for line in lines if line["event"] == "ws_unauthorized"]
    assert refused["log_level"] == "info"
    if key is None:
        assert refused["credential"] == "none"
    else:
        assert (refused["credential"], refused["key_id"]) == ("header", key_id(key))
        assert key not in str(lines)


async def test_an_expired_or_revoked_key_is_refused_with_4401(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project()
    expired, _ = await world.api_keys.create_key(
        world.tenant_id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    revoked, info = await world.api_keys.create_key(world.tenant_id)
    await world.api_keys.revoke_key(info.key_id)  # before the notifier ever saw it
    for key in (expired, revoked):
        async with client(project_url(notifier, project), key=key) as ws:
            assert (await close_of(ws))[0] == 4401


async def test_a_tenant_cannot_watch_another_tenants_project(
    notifier: RunningNotifier, world: World
) -> None:
    other_tenant = await world.api_keys.create_tenant("globex")
    theirs = await world.new_project(tenant_id=other_tenant)
    async with client(project_url(notifier, theirs), key=world.key) as ws:
        assert await close_of(ws) == (4404, "project not found")

    async with client(f"{notifier.base_url}/v1/ws/projects/nope", key=world.key) as ws:
        assert await close_of(ws) == (4404, "project not found")


@pytest.mark.parametrize("path", ["/v1/wss", "/v1/ws/projects", "/healthz"])
async def test_a_handshake_to_a_path_not_served_is_a_404_problem(
    notifier: RunningNotifier, world: World, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with client(f"{notifier.base_url}{path}", key=world.key):
            pass

    answer = refused.value.response
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert json.loads(answer.body) == {
        "type": "https://reelflow.dev/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": f"No WebSocket at {path}: connect to /v1/ws or /v1/ws/projects/{{project_id}}.",
    }


@pytest.mark.parametrize("query", ["?token=", "?x=1&%74oken="])
async def test_the_key_may_come_as_a_token_query_parameter_and_is_not_logged(
    notifier: RunningNotifier, world: World, capsys: pytest.CaptureFixture[str], query: str
) -> None:
    """However the name is spelled: Starlette decodes ``%74oken`` to ``token``, so the
    key is accepted, and uvicorn's access line shows the query as it was sent."""
    configure_logging(LogSettings(log_format="json"), service="notifier")  # as main() does
    project = await world.new_project()
    async with client(project_url(notifier, project, f"{query}{world.key}")) as ws:
        assert (await receive(ws))["type"] == "snapshot"

    logged = capsys.readouterr().err
    accepted = [line for line in logged.splitlines() if "[accepted]" in line]
    assert accepted
    assert all(f"{query}***" in line for line in accepted)
    assert world.key not in logged


async def test_after_a_broker_reconnect_lost_changes_are_caught_up(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project()
    async with client(project_url(notifier, project), key=world.key) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # The last change of a project lost with the connection: no later event shows the gap.
        await world.processing(project, 0)
        notifier.app.state.notifier.hub.catch_up_all()  # what the reconnect callback does
        caught_up = await receive(ws)

    assert (caught_up["type"], caught_up["seq"]) == ("clip.updated", 1)


# --- replicas, pings, slow readers ---------------------------------------------------------


async def test_two_replicas_each_deliver_to_their_own_clients(
    notifier: RunningNotifier, world: World, settings: Settings
) -> None:
    project = await world.new_project()
    async with (
        running_notifier(settings) as second,
        client(project_url(notifier, project), key=world.key) as on_first,
        client(project_url(second, project), key=world.key) as on_second,
    ):
        assert (await receive(on_first))["type"] == "snapshot"
        assert (await receive(on_second))["type"] == "snapshot"
        await world.publish(*await world.processing(project, 0))

        assert (await receive(on_first))["seq"] == 1
        assert (await receive(on_second))["seq"] == 1


async def test_a_client_that_stops_answering_pings_is_dropped(
    settings_for: Callable[..., Any], world: World
) -> None:
    settings = settings_for(Settings, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.2)
    project = await world.new_project()
    async with running_notifier(settings) as notifier:
        port = int(notifier.base_url.rsplit(":", 1)[1])
        # A raw socket: it completes the handshake, then never reads, so never pongs.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"GET /v1/ws/projects/{project.id}?token={world.key} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        assert head.startswith(b"HTTP/1.1 101")

        # The server closes the TCP connection: reading reaches the end.
        rest = await asyncio.wait_for(reader.read(), DEADLINE_S)
        writer.close()

    assert b"keepalive ping timeout" in rest


async def test_a_slow_reader_gets_a_snapshot_instead_of_a_backlog(
    settings_for: Callable[..., Any], world: World
) -> None:
    # Driven through the ASGI interface: a client whose socket stops taking data
    # is a send() that does not return, which is what a blocked TCP buffer means.
    settings = settings_for(Settings, ws_max_backlog=2)
    project = await world.new_project(clips=5)
    sent: list[dict[str, Any]] = []
    stuck, release = asyncio.Event(), asyncio.Event()
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] != "websocket.send":
            return
        sent.append(json.loads(message["text"]))
        if len(sent) == 2:  # the first change after the snapshot: the client stops reading
            stuck.set()
            await release.wait()

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": f"/v1/ws/projects/{project.id}",
        "raw_path": f"/v1/ws/projects/{project.id}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {world.key}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }
    before = metric("reelflow_ws_overflows_total")
    async with running_notifier(settings) as notifier:
        connection = asyncio.create_task(notifier.app(scope, incoming.get, send))
        await eventually(lambda: len(sent) == 1, "snapshot sent")
        await world.publish(*await world.processing(project, 0))
        await asyncio.wait_for(stuck.wait(), DEADLINE_S)
        for index in (1, 2, 3):  # two fill the backlog, the third overflows it
            await world.publish(*await world.processing(project, index))
        await eventually(
            lambda: metric("reelflow_ws_overflows_total") > before,
            "backlog overflowed",
        )
        release.set()
        await eventually(lambda: len(sent) == 3, "snapshot after the overflow")
        await world.publish(*await world.processing(project, 4))
        await eventually(lambda: len(sent) == 4, "the next change")
        await incoming.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(connection, DEADLINE_S)

    assert [(m["type"], m["seq"]) for m in sent] == [
        ("snapshot", 0),
        ("clip.updated", 1),
        ("snapshot", 4),
        ("clip.updated", 5),
    ]


# --- many projects on one connection -------------------------------------------------


async def test_multiplexed_subscribe_and_unsubscribe(
    notifier: RunningNotifier, world: World
) -> None:
    first, second = await world.new_project(), await world.new_project()
    await world.processing(first, 0)
    async with client(f"{notifier.base_url}/v1/ws", key=world.key) as ws:
        await ws.send(json.dumps({"type": "subscribe", "project_id": first.id, "after_seq": 0}))
        replayed = await receive(ws)
        await ws.send(json.dumps({"type": "subscribe", "project_id": second.id}))
        snapshot = await receive(ws)

        await world.publish(*await world.processing(first, 1))
        live = await receive(ws)

        await ws.send(json.dumps({"type": "unsubscribe", "project_id": first.id}))
        unsubscribed = await receive(ws)
        await world.publish(*await world.success(first, 0))
        await world.publish(*await world.processing(second, 0))
        after = await receive(ws)

    assert (replayed["type"], replayed["project_id"], replayed["seq"]) == (
        "clip.updated",
        first.id,
        1,
    )
    assert (snapshot["type"], snapshot["project"]["project_id"]) == ("snapshot", second.id)
    assert (live["project_id"], live["seq"]) == (first.id, 2)
    assert unsubscribed == {"type": "unsubscribed", "project_id": first.id}
    assert (after["project_id"], after["seq"]) == (second.id, 1)


async def test_multiplexed_bad_messages_get_errors_without_closing(
    notifier: RunningNotifier, world: World
) -> None:
    other_tenant = await world.api_keys.create_tenant("globex")
    theirs = await world.new_project(tenant_id=other_tenant)
    ours = await world.new_project()
    async with client(f"{notifier.base_url}/v1/ws", key=world.key) as ws:
        await ws.send("not json")
        not_json = await receive(ws)
        await ws.send(json.dumps({"type": "shout", "project_id": ours.id}))
        unknown_type = await receive(ws)
        await ws.send(json.dumps({"type": "subscribe", "project_id": ours.id, "after_seq": "0"}))
        seq_as_text = await receive(ws)
        await ws.send(json.dumps({"type": "subscribe", "project_id": theirs.id}))
        not_found = await receive(ws)
        await ws.send(json.dumps({"type": "subscribe", "project_id": ours.id}))
        snapshot = await receive(ws)

    assert not_json["type"] == unknown_type["type"] == "error"
    assert "invalid" in not_json["message"]
    assert unknown_type["message"] == (
        "invalid message: unknown type 'shout'; send subscribe or unsubscribe"
    )
    assert seq_as_text == {
        "type": "error",
        "message": "invalid message: subscribe.after_seq: must be an integer, not a string",
    }
    assert not_found == {"type": "error", "message": "project not found", "project_id": theirs.id}
    assert (snapshot["type"], snapshot["project"]["project_id"]) == ("snapshot", ours.id)


async def test_a_client_message_larger_than_any_the_protocol_has_closes_the_socket_with_1009(
    notifier: RunningNotifier, world: World
) -> None:
    """A subscribe is about 100 bytes: a client may not make the notifier buffer megabytes."""
    ours = await world.new_project()
    async with client(f"{notifier.base_url}/v1/ws", key=world.key) as ws:
        await ws.send(json.dumps({"type": "subscribe", "project_id": ours.id, "pad": "x" * 8192}))
        code, _ = await close_of(ws)

    assert code == 1009  # message too big


# --- operations ------------------------------------------------------------------------


async def test_health_readiness_and_connection_gauge(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project()
    async with httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"rabbitmq": True, "mongodb": True}
        async with client(project_url(notifier, project), key=world.key) as ws:
            await receive(ws)
            metrics = (await http.get("/metrics")).text
    gauge = next(
        line for line in metrics.splitlines() if line.startswith("reelflow_ws_connections")
    )
    assert float(gauge.split()[-1]) >= 1


async def test_routing_and_pushing_an_event_log_with_its_correlation_id(
    notifier: RunningNotifier, world: World
) -> None:
    project = await world.new_project(clips=1)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)  # REELFLOW_LOG_LEVEL=DEBUG: both lines are debug
    try:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as lines:
            async with client(project_url(notifier, project), key=world.key) as ws:
                assert (await receive(ws))["type"] == "snapshot"
                (event,) = await world.processing(project, 0)
                await world.publish(event.model_copy(update={"correlation_id": "req-9"}))
                assert (await receive(ws))["seq"] == 1
    finally:
        root.setLevel(level)

    routed = [line for line in lines if line["event"] == "fanout_event_routed"]
    pushed = [line for line in lines if line["event"] == "ws_event_pushed"]
    assert len(routed) == len(pushed) == 1
    for line in (*routed, *pushed):
        assert (line["correlation_id"], line["project_id"], line["seq"]) == ("req-9", project.id, 1)
        assert line["tenant_id"] == world.tenant_id
    (opened,) = [line for line in lines if line["event"] == "ws_opened"]
    assert (opened["project_id"], opened["tenant_id"]) == (project.id, world.tenant_id)
