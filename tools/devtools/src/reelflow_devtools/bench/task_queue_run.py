"""The ``taskqueue`` scenario: the task-queue baseline measured as ``throughput`` measures reelflow.

A stack of its own, up beside reelflow's fast stack for the throughput rounds
(:mod:`reelflow_devtools.bench.rounds`), or alone when ``throughput`` is not run:
a fresh embedded database (or a fresh database on the given MongoDB), the
simulator with the fast stack's settings, the baseline's api and :data:`WORKERS`
worker processes (:mod:`reelflow_devtools.bench.task_queue`). Each size's run is
the throughput scenario's: the same clips as projects POSTed 20 at a time by the same client code,
from the first POST to the latest ``completed_at`` stored, the end seen on the
baseline's event exchange, measured by the same :class:`~reelflow_devtools.bench.span.Span`.
At the end every clip it stored is checked against the simulator's tasks
(:func:`~reelflow_devtools.bench.ground_truth.check_stored_projects`).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reelflow_common.settings import TopologySettings
from reelflow_common.topology import BACKSTOP_DELIVERY_LIMIT
from reelflow_devtools.bench.client import ApiClient, BenchError, api_client, create_project, scene
from reelflow_devtools.bench.ground_truth import check_stored_projects
from reelflow_devtools.bench.launcher import (
    FinishedProjects,
    StackConfig,
    broker_cpu_seconds,
    finished_projects,
    processes_cpu_seconds,
    sigterm_as_exit,
)
from reelflow_devtools.bench.span import Span
from reelflow_devtools.bench.task_queue.config import Config
from reelflow_devtools.bench.task_queue.topology import Names, delete_topology
from reelflow_devtools.bench.throughput import ThroughputPlan, warmup_size
from reelflow_devtools.connections import amqp, mongo
from reelflow_devtools.embedded_mongo import embedded_mongo
from reelflow_devtools.launcher import (
    SIM_API_KEY,
    SIMULATOR,
    sim_get,
    sim_tasks,
    start_simulator,
)
from reelflow_devtools.ports import free_port
from reelflow_devtools.processes import (
    Child,
    ProcessGroup,
    stop_children,
    wait_for_sim_url,
    wait_healthy,
)
from reelflow_devtools.waiting import poll_until_async
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_submitter.settings import Settings as SubmitterSettings

#: reelflow's bench stack runs two worker processes (submitter and poller) beside its
#: api; the notifier, its fourth, has no counterpart here
WORKERS = 2
MODULE = "reelflow_devtools.bench.task_queue"


def prefetches() -> tuple[int, int]:
    """Each worker's submit and poll prefetch, so that the baseline's :data:`WORKERS` have as many
    submits and polls in flight together as reelflow's bench stack.

    reelflow's one submitter takes at most ``tenant_submit_concurrency`` (8) of one
    tenant's clips at once, and each size of the throughput scenario is one tenant;
    its one poller takes ``poll_concurrency`` (32). Their defaults are what the bench
    runs.
    """
    tenant = SubmitterSettings.model_fields["tenant_submit_concurrency"].default
    polls = PollerSettings.model_fields["poll_concurrency"].default
    return max(1, int(tenant) // WORKERS), max(1, int(polls) // WORKERS)


@dataclass
class TaskQueueStack:
    """The running baseline: its configuration, processes and URLs."""

    config: Config
    api_url: str
    sim_url: str
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def mongo_url(self) -> str:
        return self.config.mongo_url

    @property
    def database(self) -> str:
        return self.config.database

    @property
    def amqp_url(self) -> str:
        return self.config.amqp_url

    @property
    def queue_prefix(self) -> str:
        """The prefix of every queue of the baseline's, and of the benchmark's own beside them."""
        return self.config.prefix

    def cpu_seconds(self) -> dict[str, float]:
        return processes_cpu_seconds(self.children, self.mongo_url)

    def broker_cpu_seconds(self) -> float | None:
        return broker_cpu_seconds(self.config.amqp_url)

    def finished_projects(self) -> AbstractAsyncContextManager[FinishedProjects]:
        """``project.finished`` events from now on, off the baseline's event exchange."""
        names = Names(self.config.prefix)
        return finished_projects(self.config.amqp_url, names.events, names.project_finished)


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
        submits, polls = prefetches()
        tq = Config(
            amqp_url=config.amqp_url,
            mongo_url=mongo_url,
            database=prefix.rstrip(".").replace("-", "_"),
            runware_url="",
            runware_api_key=SIM_API_KEY,
            speedup=config.sim_speedup,
            prefix=prefix,
            port=free_port(),
            submit_prefetch=submits,
            poll_prefetch=polls,
            delivery_limit=BACKSTOP_DELIVERY_LIMIT,
            wait_queue_max_length=TopologySettings.model_fields["wait_queue_max_length"].default,
        )
        exits.callback(_clean_up, tq, keep_database=config.mongo_url is None)
        exits.callback(group.stop_all, 10)
        sim = start_simulator(group, config.simulator())
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
    """Until every worker consumes the submit queue (a process that died fails at once)."""
    names = Names(stack.config.prefix)
    async with amqp(stack.config.amqp_url) as connection:

        async def consumed() -> bool | None:
            channel = await connection.channel()
            queue = await channel.declare_queue(names.submit, passive=True)
            await channel.close()
            return (queue.declaration_result.consumer_count or 0) >= WORKERS or None

        await poll_until_async(
            consumed,
            what=f"the task-queue baseline's {WORKERS} workers to consume {names.submit}",
            deadline_s=deadline_s,
            pause_s=0.1,
            error=BenchError,
            child=list(stack.children.values()),
        )


def _clean_up(config: Config, *, keep_database: bool) -> None:
    asyncio.run(_delete(config, keep_database=keep_database))


async def _delete(config: Config, *, keep_database: bool) -> None:
    async with amqp(config.amqp_url) as connection:
        await delete_topology(await connection.channel(), config)
    if not keep_database:
        async with mongo(config.mongo_url) as client:
            await client.drop_database(config.database)


async def run_size(stack: TaskQueueStack, plan: ThroughputPlan, size: int) -> dict[str, Any]:
    """``plan.clips`` clips as projects of ``size`` scenes, as ``throughput.run_size`` does."""
    projects_count = -(-plan.clips // size)
    gate = asyncio.Semaphore(plan.concurrency)

    async def create(api: ApiClient, index: int) -> str:
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
        sim_before = await sim_get(stack.sim_url, "/__sim/stats")
        span = await Span.start(stack)
        ids = await asyncio.gather(*(create(api, i) for i in range(projects_count)))
        posted = time.time()
        seen_done = await finished.wait_or_fail(
            ids, deadline_s=plan.deadline_s, what=f"task queue: {size}-scene projects"
        )
        await span.stop()
        sim_after = await sim_get(stack.sim_url, "/__sim/stats")
    completed_at = await _completed_at(stack.config, list(ids))
    clips = projects_count * size
    return {
        "scenes_per_project": size,
        "projects": projects_count,
        "clips": clips,
        "clips_succeeded": len(completed_at),
        "workers": WORKERS,
        "posts_s": round(posted - span.started, 3),
        **span.results(clips, max(completed_at) if completed_at else seen_done),
        "provider_requests": sim_after["requests"] - sim_before["requests"],
        "provider_requests_per_clip": round(
            (sim_after["requests"] - sim_before["requests"]) / clips, 2
        ),
        "provider_tasks": sim_after["tasks"] - sim_before["tasks"],
    }


async def _completed_at(config: Config, ids: list[str]) -> list[float]:
    """Every succeeded clip's ``completed_at``, as a POSIX time (read after the counted span)."""
    async with mongo(config.mongo_url) as client:
        projects = client[config.database]["projects"]
        found: list[float] = []
        async for project in projects.find({"_id": {"$in": ids}}, {"clips": 1}):
            found += [
                clip["completed_at"].timestamp()
                for clip in project["clips"]
                if clip["status"] == "success" and clip["completed_at"] is not None
            ]
        return found


async def check_ground_truth(stack: TaskQueueStack) -> dict[str, Any]:
    """Every clip the baseline stored against the simulator's tasks (``ground_truth``)."""
    config = stack.config
    async with mongo(config.mongo_url) as client:
        projects = await client[config.database]["projects"].find({}).to_list()
    tasks = {task["task_uuid"]: task for task in await sim_tasks(stack.sim_url)}
    stats = await sim_get(stack.sim_url, "/__sim/stats")
    return check_stored_projects(projects, tasks, stats, sim_url=stack.sim_url)


async def run_task_queue(
    stack: TaskQueueStack, plan: ThroughputPlan
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The warm-up (as reelflow's: not measured), every size in turn, the ground truth."""
    await run_size(stack, replace(plan, clips=plan.warmup_clips), warmup_size(plan))
    runs = [await run_size(stack, plan, size) for size in plan.sizes]
    return runs, await check_ground_truth(stack)
