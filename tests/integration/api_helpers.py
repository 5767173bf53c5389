"""Running the API in-process (ASGI, with its lifespan) and talking to it like a client."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from reelflow_api.app import create_app
from reelflow_api.deps import AppState
from reelflow_api.settings import Settings
from reelflow_common.broker import Publisher, amqp_channel
from reelflow_common.broker.stacks import delete_topology
from reelflow_common.messages import LaneOpened
from reelflow_common.mongo import Database
from reelflow_common.store import (
    ApiKeyStore,
    Change,
    Project,
    ProjectStore,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
)
from reelflow_common.topology import SUBMIT_CLIP, Topology, declare_lane
from tests.waiting import READY_DEADLINE_S, eventually, eventually_matches

PROBLEM_JSON = "application/problem+json"
#: the app's start (the broker's topology declared, indexes built) is quick alone; a
#: deadline, not a wait: 30 s was seen to pass while the machine ran three test suites
LIFESPAN_STARTUP_DEADLINE_S = 120

T = TypeVar("T")

#: a body every test can post: two scenes, one with every field, one with the defaults
TWO_SCENES: dict[str, Any] = {
    "title": "Trip to Lisbon",
    "model": "google:3@3",
    "scenes": [
        {
            "prompt": "tram climbing a steep street at dawn",
            "duration": 4,
            "width": 1280,
            "height": 720,
        },
        {"prompt": "sunset over the river"},
    ],
}


@dataclass(frozen=True)
class Received:
    """A message taken off a work queue."""

    body: dict[str, Any]
    headers: dict[str, Any]
    type: str | None


@dataclass(frozen=True)
class Api:
    """The app under test, an HTTP client for it, and direct access to its stores and queues."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    db: Database
    projects: ProjectStore
    keys: ApiKeyStore
    topology: Topology
    connection: AbstractRobustConnection

    async def tenant(self, name: str = "acme") -> dict[str, str]:
        """Headers authenticating as a new tenant."""
        _tenant_id, auth = await self.new_tenant(name)
        return auth

    async def new_tenant(self, name: str = "acme") -> tuple[str, dict[str, str]]:
        """A new tenant's id, and headers authenticating as it."""
        tenant_id = await self.keys.create_tenant(name)
        key = await self.keys.issue_key(tenant_id)
        return tenant_id, {"Authorization": f"Bearer {key}"}

    def knows_lane(self, tenant_id: str) -> bool:
        """Whether the API would publish the tenant's clips straight to its lane."""
        state: AppState = self.app.state.reelflow
        return state.lanes.consumed(tenant_id)

    async def announce_lane(self, tenant_id: str) -> str:
        """Do what a submitter does on opening a tenant's lane (declare it, say so); its name.

        Returns once the API has heard.
        """
        async with amqp_channel(self.connection) as channel:
            lane = await declare_lane(channel, self.topology, tenant_id)
            publisher = Publisher(channel, self.topology, timeout_s=5)
            await publisher.signal(LaneOpened(tenant_id=tenant_id))
        await eventually(lambda: self.knows_lane(tenant_id), "the API told of the lane")
        return lane

    async def create(
        self,
        auth: dict[str, str],
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/projects",
            json=TWO_SCENES if body is None else body,
            headers=auth | (headers or {}),
            params=params,
        )

    async def drain(self, work_queue: str = SUBMIT_CLIP) -> list[Received]:
        """Every message now on ``work_queue`` (unprefixed name), taken off it.

        The API answers only after the broker confirmed its publishes, so
        whatever it sent is on the queue by the time a test calls this.
        """
        return await self.take(self.topology.queue(work_queue))

    async def take(self, queue_name: str) -> list[Received]:
        """Every message now on the queue of that (full) name, taken off it."""
        async with amqp_channel(self.connection) as channel:
            queue = await channel.get_queue(queue_name, ensure=False)
            received: list[Received] = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                received.append(_received(message))
            return received

    async def events_queue(self) -> str:
        """A queue of this connection's own that gets every event from now on; its name."""
        async with amqp_channel(self.connection) as channel:
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(self.topology.events_exchange, routing_key="#")
            return queue.name


async def stored(api: Api, project_id: str) -> Project:
    project = await api.projects.get(project_id)
    assert project is not None
    return project


async def move_clip(api: Api, project_id: str, task_uuid: str, result: TaskResult) -> Change:
    """Take a clip through processing to ``result``, as the submitter and poller would.

    The change it stored, with the events the poller would publish.
    """
    clip = (await stored(api, project_id)).clip_of_task(task_uuid)
    assert clip is not None
    assert clip.lease is not None
    scene = clip.scene_index
    await api.projects.mark_processing(project_id, scene, task_uuid, token=clip.lease.token)
    return await api.projects.record(project_id, scene, task_uuid, result)


async def finish(api: Api, project_id: str, task_uuid: str) -> Change:
    video = TaskSucceeded(video_url=f"https://cdn.test/{task_uuid}.mp4", cost=0.5)
    return await move_clip(api, project_id, task_uuid, video)


async def fail(api: Api, project_id: str, task_uuid: str, code: str = "providerError") -> None:
    await move_clip(api, project_id, task_uuid, TaskFailed(code=code, message="boom"))


def _received(message: AbstractIncomingMessage) -> Received:
    return Received(json.loads(message.body), dict(message.headers), message.type)


@asynccontextmanager
async def running_api(
    settings: Settings,
    db: Database,
    connection: AbstractRobustConnection,
    *,
    wait_until_ready: bool = True,
) -> AsyncIterator[Api]:
    """``create_app(settings)`` with its lifespan running, and a client for it.

    Unless told not to, it waits until ``/readyz`` says ``"status": "ok"``, every
    check true: the broker is linked and answering (a 200 ``degraded``, the broker
    down after the first link, is not enough: its publishes would fail), and tests
    write to the database only once the app's index builds are done. The embedded
    SecantusDB hangs when an index is built on a collection while another client's
    insert creates that collection.
    """
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=LIFESPAN_STARTUP_DEADLINE_S) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://api.test"
        ) as client,
    ):
        if wait_until_ready:
            await eventually_matches(
                lambda: client.get("/readyz"),
                lambda r: r.json()["status"] == "ok",
                "the API ready and linked to the broker",
                READY_DEADLINE_S,
            )
        yield Api(
            app=app,
            client=client,
            settings=settings,
            db=db,
            projects=ProjectStore(db, lease_s=settings.lease_s),
            keys=ApiKeyStore(db),
            topology=Topology.from_settings(settings),
            connection=connection,
        )


@asynccontextmanager
async def isolated_api(amqp_url: str, mongo_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """An API with a queue prefix and a database of its own, removed afterwards.

    For module-scoped fixtures, which cannot use the per-test ones: tests that
    only read, or that each use a tenant of their own, share one app and save
    its start and clean-up.
    """
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    database = f"test_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        amqp_url=SecretStr(amqp_url),
        amqp_prefix=prefix,
        mongo_url=SecretStr(mongo_url),
        mongo_database=database,
        **overrides,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, uuidRepresentation="standard", tz_aware=True, timeoutMS=10_000
    )
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        async with running_api(settings, client[database], connection) as api:
            yield api
    finally:
        await delete_topology(connection, Topology.from_settings(settings))
        await connection.close()
        await client.drop_database(database)
        await client.close()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem+json of ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


def error_locs(problem: dict[str, Any]) -> list[list[Any]]:
    return [error["loc"] for error in problem.get("errors", [])]
