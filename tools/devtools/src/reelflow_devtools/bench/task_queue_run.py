"""The ``taskqueue`` scenario: the task-queue baseline measured as ``throughput`` measures reelflow.

A stack of its own, run (and stopped) before reelflow's starts: a fresh embedded
database (or a fresh database on the given MongoDB), the simulator with the fast
stack's settings, the baseline's api and :data:`WORKERS` worker processes
(:mod:`reelflow_devtools.bench.task_queue`). Each size's run is the throughput
scenario's: the same clips as projects POSTed 20 at a time by the same client code,
from the first POST to the latest ``completed_at`` stored, the end seen on the
baseline's event exchange, the database operations from the server's ``top``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
from pymongo import AsyncMongoClient, MongoClient

from reelflow_common.settings import TopologySettings
from reelflow_common.topology import BACKSTOP_DELIVERY_LIMIT
from reelflow_devtools import dbcounters
from reelflow_devtools.bench.client import BenchError, api_client, create_project, scene
from reelflow_devtools.bench.launcher import (
    FinishedProjects,
    StackConfig,
    cpu_seconds,
    embedded_mongo_pid,
    listening_pid,
    sigterm_as_exit,
)
from reelflow_devtools.bench.task_queue.config import PROJECT_FINISHED, Config
from reelflow_devtools.bench.task_queue.topology import Names, delete_topology
from reelflow_devtools.bench.throughput import ThroughputPlan
from reelflow_devtools.embedded_mongo import embedded_mongo, free_port
from reelflow_devtools.launcher import SIM_API_KEY, SIMULATOR
from reelflow_devtools.processes import (
    Child,
    ProcessGroup,
    console_script,
    stop_children,
    wait_for_sim_url,
    wait_healthy,
)
from reelflow_devtools.rabbitmq import is_local
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_submitter.settings import Settings as SubmitterSettings

#: reelflow's bench stack runs two worker processes (submitter and poller) beside its
#: api; the notifier, its fourth, has no counterpart here
WORKERS = 2
MODULE = "reelflow_devtools.bench.task_queue"


def prefetches() -> dict[str, int]:
    """Each worker's prefetch, so that the baseline's :data:`WORKERS` have as many
    submits and polls in flight together as reelflow's bench stack.

    reelflow's one submitter takes at most ``tenant_submit_concurrency`` (8) of one
    tenant's clips at once, and each size of the throughput scenario is one tenant;
    its one poller takes ``poll_concurrency`` (32). Their defaults are what the bench
    runs.
    """
    tenant = SubmitterSettings.model_fields["tenant_submit_concurrency"].default
    polls = PollerSettings.model_fields["poll_concurrency"].default
    return {
        "submit_prefetch": max(1, int(tenant) // WORKERS),
        "poll_prefetch": max(1, int(polls) // WORKERS),
    }


@dataclass
class TaskQueueStack:
    """The running baseline: its configuration, processes and URLs."""

    config: Config
    api_url: str
    sim_url: str
    children: dict[str, Child] = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        pids = {name: child.process.pid for name, child in self.children.items()}
        mongo = embedded_mongo_pid()
        if mongo is not None:
            pids["mongo"] = mongo
        found = {name: cpu_seconds(pid) for name, pid in pids.items()}
        return {name: seconds for name, seconds in found.items() if seconds is not None}

    def broker_cpu_seconds(self) -> float | None:
        url = urlsplit(self.config.amqp_url)
        if not is_local(url.hostname):
            return None
        pid = listening_pid(url.port or 5672)
        return None if pid is None else cpu_seconds(pid)

    async def sim_stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.sim_url, timeout=30) as client:
            answer = await client.get("/__sim/stats")
            answer.raise_for_status()
            stats: dict[str, Any] = answer.json()
            return stats

    @asynccontextmanager
    async def finished_projects(self) -> AsyncIterator[FinishedProjects]:
        """``project.finished`` events from now on, off the baseline's event exchange."""
        connection = await aio_pika.connect(self.config.amqp_url, timeout=15)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            names = Names(self.config.prefix)
            await queue.bind(names.events, PROJECT_FINISHED)
            yield FinishedProjects(queue)
        finally:
            await connection.close()


@contextmanager
def running_task_queue(config: StackConfig, run_dir: Path) -> Iterator[TaskQueueStack]:
    """Database, simulator (as the fast stack's), api and workers; all stopped, queues deleted."""
    prefix = f"bench-tq-{uuid.uuid4().hex[:8]}."
    group = ProcessGroup(log_dir=run_dir / "logs")
    shutil.rmtree(run_dir / "mongo-data", ignore_errors=True)
    shutil.rmtree(run_dir / "logs", ignore_errors=True)
    (run_dir / "logs").mkdir(parents=True)
    with sigterm_as_exit(), ExitStack() as exits:
        mongo_url = config.mongo_url or exits.enter_context(
            embedded_mongo(run_dir / "mongo-data", log_path=run_dir / "logs" / "mongo.log")
        )
        tq = Config(
            amqp_url=config.amqp_url,
            mongo_url=mongo_url,
            database=prefix.rstrip(".").replace("-", "_"),
            runware_url="",
            runware_api_key=SIM_API_KEY,
            speedup=config.sim_speedup,
            prefix=prefix,
            port=free_port(),
            **prefetches(),
            delivery_limit=BACKSTOP_DELIVERY_LIMIT,
            wait_queue_max_length=TopologySettings.model_fields["wait_queue_max_length"].default,
        )
        exits.callback(_clean_up, tq, keep_database=config.mongo_url is None)
        exits.callback(group.stop_all, 10)
        sim = group.start(
            SIMULATOR,
            [console_script("reelflow-runware-sim"), "--port", "0", "--seed", "7"],
            {"RUNWARE_SIM_SPEEDUP": str(config.sim_speedup)},
        )
        tq = replace(tq, runware_url=wait_for_sim_url(sim))
        stack = TaskQueueStack(tq, f"http://127.0.0.1:{tq.port}", tq.runware_url)
        stack.children[SIMULATOR] = sim  # its CPU counts, as in reelflow's figures
        python = sys.executable
        stack.children["api"] = group.start("tq-api", [python, "-m", MODULE, "api"], tq.env())
        wait_healthy(stack.children["api"], f"{stack.api_url}/healthz")
        for n in range(WORKERS):
            worker = group.start(f"tq-worker-{n}", [python, "-m", MODULE, "worker"], tq.env())
            stack.children[f"worker-{n}"] = worker
        asyncio.run(_wait_consuming(stack, deadline_s=60))
        try:
            yield stack
        finally:
            stop_children(stack.children.values(), timeout_s=10)


async def _wait_consuming(stack: TaskQueueStack, *, deadline_s: float) -> None:
    """Until every worker consumes the submit queue (a worker that died fails at once)."""
    names = Names(stack.config.prefix)
    connection = await aio_pika.connect(stack.config.amqp_url, timeout=15)
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                channel = await connection.channel()
                queue = await channel.declare_queue(names.submit, passive=True)
                await channel.close()
                consumers = queue.declaration_result.consumer_count or 0
                if consumers >= WORKERS:
                    return
                dead = [name for name, child in stack.children.items() if not child.alive()]
                if dead:
                    raise BenchError(f"task-queue baseline: {dead} exited at start")
                await asyncio.sleep(0.1)  # a starting process; bounded by the deadline
    finally:
        await connection.close()


def _clean_up(config: Config, *, keep_database: bool) -> None:
    asyncio.run(_delete_queues(config))
    if not keep_database:
        client: MongoClient[dict[str, Any]] = MongoClient(config.mongo_url, timeoutMS=10_000)
        try:
            client.drop_database(config.database)
        finally:
            client.close()


async def _delete_queues(config: Config) -> None:
    connection = await aio_pika.connect(config.amqp_url, timeout=15)
    try:
        await delete_topology(await connection.channel(), config)
    finally:
        await connection.close()


async def run_size(stack: TaskQueueStack, plan: ThroughputPlan, size: int) -> dict[str, Any]:
    """``plan.clips`` clips as projects of ``size`` scenes, as ``throughput.run_size`` does."""
    projects_count = -(-plan.clips // size)
    gate = asyncio.Semaphore(plan.concurrency)
    config = stack.config

    async def create(api: httpx.AsyncClient, index: int) -> str:
        body = {
            "title": f"task queue {size}-scene project {index}",
            "scenes": [scene(f"tq {size}x{index} scene {j}", 0) for j in range(size)],
        }
        async with gate:
            return await create_project(api, body)

    async with (
        api_client(stack.api_url, "unused", connections=plan.concurrency) as api,
        stack.finished_projects() as finished,
    ):
        load_at_start = os.getloadavg()
        ops_before = await dbcounters.operations(config.mongo_url, config.database)
        sim_before = await stack.sim_stats()
        cpu_before = stack.cpu_seconds()
        broker_before = stack.broker_cpu_seconds()
        started = time.time()
        ids = await asyncio.gather(*(create(api, i) for i in range(projects_count)))
        posted = time.time()
        try:
            seen_done = await finished.wait(ids, deadline_s=plan.deadline_s)
        except TimeoutError:
            late = f"task queue: {size}-scene projects not finished after {plan.deadline_s:g} s"
            raise BenchError(late) from None
        cpu_after = stack.cpu_seconds()
        broker_after = stack.broker_cpu_seconds()
        ops = dbcounters.spent(
            ops_before, await dbcounters.operations(config.mongo_url, config.database)
        )
        sim_after = await stack.sim_stats()
    completed_at = await _completed_at(config, list(ids))
    clips = projects_count * size
    wall_s = (max(completed_at) if completed_at else seen_done) - started
    return {
        "scenes_per_project": size,
        "projects": projects_count,
        "clips": clips,
        "clips_succeeded": len(completed_at),
        "workers": WORKERS,
        "posts_s": round(posted - started, 3),
        "wall_s": round(wall_s, 3),
        "load_at_start": [round(load, 2) for load in load_at_start],
        "clips_per_s": round(clips / wall_s, 2) if wall_s > 0 else None,
        "db_ops": dbcounters.total(ops),
        "db_ops_per_clip": round(dbcounters.total(ops) / clips, 2),
        "db_ops_by_kind": {kind: dbcounters.total(ops, kind) for kind in dbcounters.KINDS},
        "cpu_s_per_clip": {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / clips, 4)
            for name in cpu_after
        },
        "broker_cpu_s_per_clip": (
            None
            if broker_before is None or broker_after is None
            else round((broker_after - broker_before) / clips, 4)
        ),
        "provider_requests_per_clip": round(
            (sim_after["requests"] - sim_before["requests"]) / clips, 2
        ),
        "provider_tasks": sim_after["tasks"] - sim_before["tasks"],
    }


async def _completed_at(config: Config, ids: list[str]) -> list[float]:
    """Every succeeded clip's ``completed_at``, as a POSIX time (read after the counted span)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config.mongo_url, tz_aware=True)
    try:
        projects = client[config.database]["projects"]
        found: list[float] = []
        async for project in projects.find({"_id": {"$in": ids}}, {"clips": 1}):
            found += [
                clip["completed_at"].timestamp()
                for clip in project["clips"]
                if clip["status"] == "success" and clip["completed_at"] is not None
            ]
        return found
    finally:
        await client.close()


async def run_task_queue(stack: TaskQueueStack, plan: ThroughputPlan) -> list[dict[str, Any]]:
    """The warm-up (as reelflow's: not measured), then every size in turn."""
    warmup = min(plan.warmup_clips, max(plan.sizes))
    await run_size(stack, replace(plan, clips=plan.warmup_clips), warmup)
    return [await run_size(stack, plan, size) for size in plan.sizes]
