"""What the chaos run sends: projects, forged webhooks, poison messages, and WebSocket watchers.

It all runs on one event loop in a thread of its own, while the main thread
kills and restarts processes. Every request is retried until it is answered
(processes are down at random moments), within the run's deadline; a project
is created with an ``Idempotency-Key``, so a retried POST whose first answer
was lost never makes a second project.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import httpx

from reelflow_common.backoff import Backoff
from reelflow_common.topology import WORK_QUEUES, Topology
from reelflow_devtools.bench.client import auth, scene
from reelflow_devtools.chaos.plan import ChaosPlan
from reelflow_devtools.chaos.watchers import WatchLog, watch
from reelflow_devtools.connections import amqp

FORGED_URL = "http://evil.example/forged.mp4"
FORGED_CODE = "forgedFailure"
#: between the workload's attempts at the api and the broker while they are down
_RETRY = Backoff(first_s=0.5, cap_s=5.0, factor=1.5)
#: a poison publish's connect, shorter than a tool's usual: a broker being killed is
#: tried again (``_RETRY``) rather than waited for
_POISON_CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where the workload sends things."""

    api_url: str
    ws_url: str
    sim_url: str
    amqp_url: str
    topology: Topology
    webhook_secret: str
    key: str


@dataclass
class Created:
    index: int
    title: str
    project_id: str
    tasks: dict[int, str]  # scene -> task UUID


@dataclass
class Forgery:
    task_uuid: str
    kind: str  # "success" or "failure"
    sim_state: str | None  # what Runware had at that moment
    status: int | None  # the api's answer; None if it never answered


@dataclass
class WorkloadLog:
    """Everything the workload did, for the report."""

    created: list[Created] = field(default_factory=list)
    not_created: list[int] = field(default_factory=list)
    post_answers: Counter[str] = field(default_factory=Counter)
    forgeries: list[Forgery] = field(default_factory=list)
    #: body -> work queue (unprefixed) of every poison message the broker confirmed
    poison: dict[bytes, str] = field(default_factory=dict)
    watchers: list[WatchLog] = field(default_factory=list)
    creations_done: threading.Event = field(default_factory=threading.Event)
    #: what stopped the workload early (a bug in the harness or an unexpected answer)
    error: str | None = None


async def _retrying(
    attempt: Callable[[], Awaitable[T | None]], loop: asyncio.AbstractEventLoop, deadline: float
) -> T | None:
    """``attempt()`` until it returns something, backing off, until ``deadline``."""
    failures = 0
    while loop.time() < deadline:
        found = await attempt()
        if found is not None:
            return found
        await asyncio.sleep(_RETRY.delay_s(failures))  # between attempts; the deadline bounds it
        failures += 1
    return None


class Workload:
    def __init__(self, target: Target, plan: ChaosPlan, deadline_s: float) -> None:
        self.target = target
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.log = WorkloadLog()
        self._deadline_s = deadline_s

    def start(self) -> threading.Thread:
        """Run everything in a thread of its own; it ends when all of it is done."""
        # A daemon: an interrupted run exits without waiting for the workload's deadline.
        thread = threading.Thread(target=self._thread, name="chaos-workload", daemon=True)
        thread.start()
        return thread

    def _thread(self) -> None:
        # A connection attempt to a broker that is down: aio-pika logs it and leaves a
        # coroutine unawaited; the publish is retried, so both are noise here.
        for name in ("aio_pika", "aiormq"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", "coroutine 'Connection.close' was never awaited")
        try:
            asyncio.run(self._run())
        except Exception as exc:  # reported by the run, which then fails
            self.log.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.log.creations_done.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_s
        window_end = loop.time() + self.plan.duration_s
        plan = self.plan
        watched = set(self.rng.sample(range(plan.projects), min(plan.watchers, plan.projects)))
        async with httpx.AsyncClient(timeout=15) as http, asyncio.TaskGroup() as tasks:
            tasks.create_task(self._forge(http, window_end, deadline))
            tasks.create_task(self._poison(window_end, deadline))
            creations = [
                tasks.create_task(self._create(http, index, index in watched, tasks, deadline))
                for index in range(plan.projects)
            ]
            await asyncio.gather(*creations)
            self.log.creations_done.set()

    # --- projects ------------------------------------------------------------------------

    async def _create(
        self,
        http: httpx.AsyncClient,
        index: int,
        watched: bool,
        tasks: asyncio.TaskGroup,
        deadline: float,
    ) -> None:
        plan, loop = self.plan, asyncio.get_running_loop()
        rng = random.Random(f"{plan.seed}:project:{index}")
        title = f"chaos {index}"
        body = {
            "title": title,
            "scenes": [
                scene(f"chaos {index}.{n}", rng.uniform(plan.latency_min_s, plan.latency_max_s))
                for n in range(self._scenes(index))
            ],
        }
        await asyncio.sleep(index * plan.duration_s / plan.projects)  # spread over the window
        headers = auth(self.target.key) | {"Idempotency-Key": f"chaos-{plan.seed}-{index}"}

        async def post() -> dict[str, Any] | None:
            try:
                answer = await http.post(
                    f"{self.target.api_url}/v1/projects", json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                self.log.post_answers[type(exc).__name__] += 1
                return None
            self.log.post_answers[str(answer.status_code)] += 1
            if answer.status_code in (200, 202):
                found: dict[str, Any] = answer.json()
                return found
            if answer.status_code < 500 and answer.status_code != 429:
                raise RuntimeError(
                    f"POST /v1/projects answered {answer.status_code}: {answer.text}"
                )
            return None

        project = await _retrying(post, loop, deadline)
        if project is None:
            self.log.not_created.append(index)
            return
        created = Created(
            index,
            title,
            project["project_id"],
            {clip["scene_index"]: clip["task_uuid"] for clip in project["results"]},
        )
        self.log.created.append(created)
        if watched:
            log = WatchLog(created.project_id)
            self.log.watchers.append(log)
            watcher_rng = random.Random(f"{plan.seed}:watcher:{index}")
            tasks.create_task(
                watch(self.target.ws_url, self.target.key, log, watcher_rng, deadline)
            )

    def _scenes(self, index: int) -> int:
        plan = self.plan
        if index < plan.projects - 1:
            return plan.scenes_per_project
        return plan.clips - plan.scenes_per_project * (plan.projects - 1)

    # --- forged webhooks -----------------------------------------------------------------

    async def _forge(self, http: httpx.AsyncClient, window_end: float, deadline: float) -> None:
        """Forged results through the window, for tasks Runware is still working on if it can."""
        loop, plan = asyncio.get_running_loop(), self.plan
        spacing = plan.duration_s / max(1, plan.forged_webhooks)
        for number in range(plan.forged_webhooks):
            await asyncio.sleep(spacing)
            if loop.time() > window_end or not self.log.created:
                continue
            task_uuid, project_id, scene_index, state = await self._forgery_target(http)
            kind = "success" if number % 2 == 0 else "failure"
            body: dict[str, Any]
            if kind == "success":
                body = {
                    "data": [
                        {
                            "taskType": "videoInference",
                            "taskUUID": task_uuid,
                            "status": "success",
                            "videoUUID": str(uuid.uuid4()),
                            "videoURL": FORGED_URL,
                            "cost": 0.01,
                        }
                    ]
                }
            else:
                body = {
                    "errors": [
                        {
                            "code": FORGED_CODE,
                            "message": "forged by make chaos",
                            "taskType": "videoInference",
                            "taskUUID": task_uuid,
                        }
                    ]
                }
            url = f"{self.target.api_url}/v1/webhooks/runware/{self.target.webhook_secret}"
            params: dict[str, str | int] = {"project_id": project_id, "scene": scene_index}

            async def send(
                url: str = url, body: dict[str, Any] = body, params: dict[str, str | int] = params
            ) -> int | None:
                try:
                    answer = await http.post(url, params=params, json=body)
                except httpx.HTTPError:
                    return None
                return None if answer.status_code >= 500 else answer.status_code

            status = await _retrying(send, loop, min(deadline, loop.time() + 20))
            self.log.forgeries.append(Forgery(task_uuid, kind, state, status))

    async def _forgery_target(self, http: httpx.AsyncClient) -> tuple[str, str, int, str | None]:
        """A clip whose task Runware is still working on (or hung), else any clip."""
        where = {
            task_uuid: (project.project_id, scene_index)
            for project in self.log.created
            for scene_index, task_uuid in project.tasks.items()
        }
        states: dict[str, str] = {}
        try:
            answer = await http.get(f"{self.target.sim_url}/__sim/tasks")
            body = answer.json()
            tasks = body["tasks"] if isinstance(body, dict) else body
            states = {task["task_uuid"]: task["state"] for task in tasks}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass  # no ground truth this time: any clip will do
        running = sorted(t for t in where if states.get(t) in ("hang", "processing"))
        task_uuid = self.rng.choice(running or sorted(where))
        project_id, scene_index = where[task_uuid]
        return task_uuid, project_id, scene_index, states.get(task_uuid)

    # --- poison messages -----------------------------------------------------------------

    async def _poison(self, window_end: float, deadline: float) -> None:
        """Malformed messages straight onto the work queues, at random moments of the window."""
        loop, plan = asyncio.get_running_loop(), self.plan
        moments = sorted(self.rng.uniform(0, plan.duration_s) for _ in range(plan.poison_messages))
        began = window_end - plan.duration_s
        for number, moment in enumerate(moments):
            await asyncio.sleep(max(0.0, began + moment - loop.time()))
            work_queue = WORK_QUEUES[number % len(WORK_QUEUES)]
            body = (
                f"chaos poison {number}: {{not json".encode()
                if number % 2 == 0
                else json.dumps({"chaos_poison": number}).encode()
            )

            async def publish(body: bytes = body, work_queue: str = work_queue) -> bool | None:
                try:
                    async with amqp(
                        self.target.amqp_url, timeout_s=_POISON_CONNECT_TIMEOUT_S
                    ) as connection:
                        channel = await connection.channel()  # publisher confirms
                        await channel.default_exchange.publish(
                            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                            routing_key=self.target.topology.queue(work_queue),
                            mandatory=True,
                            timeout=10,
                        )
                except (aio_pika.exceptions.AMQPError, OSError, TimeoutError):
                    return None
                return True

            if await _retrying(publish, loop, deadline):
                self.log.poison[body] = work_queue
