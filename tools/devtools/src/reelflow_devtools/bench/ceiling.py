"""The raw ceiling: the database and broker work of a run, done bare by a small script.

For one throughput run, reelflow's or the task-queue baseline's, it repeats, on
the database server and RabbitMQ that run used (:class:`CeilingSite`), as many
inserts, single-document updates (``update`` and ``findAndModify`` round trips
alike), single-document reads and confirmed publishes (persistent, to a quorum
queue like the work queues) as the run made (:class:`Work`), from
``concurrency`` workers at once. Nothing else: no HTTP, no decisions, no
provider. ``clips / wall`` is then the most any pipeline doing that work could
achieve here, and the run's throughput a fraction of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
from pymongo import AsyncMongoClient

from reelflow_common.broker.transport import connect_robust


@dataclass(frozen=True)
class Work:
    """Round trips of one run, by kind."""

    clips: int
    inserts: int
    updates: int
    reads: int
    publishes: int

    @classmethod
    def of(cls, run: dict[str, Any]) -> Work:
        """The work of one throughput size's results (``bench.throughput``)."""
        kinds = run["db_ops_by_kind"]
        return cls(
            clips=run["clips"],
            inserts=kinds["insert"],
            updates=kinds["update"] + kinds["commands"],
            reads=kinds["queries"] + kinds["getmore"],
            publishes=run["confirmed_publishes"],
        )

    @classmethod
    def of_task_queue(cls, run: dict[str, Any]) -> Work:
        """The work of one of the task-queue baseline's runs (``bench.task_queue_run``).

        Its database work is counted as reelflow's, by the server. Its processes keep
        no count of what they publish, so the publishes are counted from what each one
        leads to: every Runware request follows the consumption of one task published
        for it (the api's submit task or a worker's retry before a ``videoInference``,
        a poll task before a ``getResponse``), and every project ends with one
        ``project.finished``. A redelivered task, which is asked for again without being
        published again, would make this an overcount (more work for the ceiling, a lower
        share for the baseline); a request that never reached the simulator (a refused
        connection) an undercount.
        """
        kinds = run["db_ops_by_kind"]
        return cls(
            clips=run["clips"],
            inserts=kinds["insert"],
            updates=kinds["update"] + kinds["commands"],
            reads=kinds["queries"] + kinds["getmore"],
            publishes=run["provider_requests"] + run["projects"],
        )


class CeilingSite(Protocol):
    """Where a run's work went, so its ceiling goes there too: reelflow's stack or the
    baseline's (each has a database server of its own unless both are given one)."""

    @property
    def mongo_url(self) -> str: ...

    @property
    def database(self) -> str: ...

    @property
    def amqp_url(self) -> str: ...

    @property
    def queue_prefix(self) -> str: ...

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the site's processes, its database server's as ``mongo``."""
        ...


@dataclass(frozen=True)
class CeilingPlan:
    concurrency: int = 32
    #: bytes of the document each insert writes (a project of a few scenes)
    document_bytes: int = 2000


async def run_ceiling(site: CeilingSite, work: Work, plan: CeilingPlan) -> dict[str, Any]:
    """Do ``work`` bare at ``site``; the wall time and ``clips / wall``."""
    collection_name = f"ceiling_{uuid.uuid4().hex[:8]}"
    queue_name = f"{site.queue_prefix}ceiling.{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(site.mongo_url, timeoutMS=30_000)
    # The services' own connection code: a turn's frames in one socket write, as theirs.
    connection = await connect_robust(
        site.amqp_url, name="bench-ceiling", reconnect_interval_s=5, timeout_s=15
    )
    collection = client[site.database][collection_name]
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        padding = "x" * plan.document_bytes
        ids = list(range(max(1, work.inserts)))

        async def insert(n: int) -> None:
            await collection.insert_one({"_id": n, "n": 0, "padding": padding})

        async def update(n: int) -> None:
            await collection.update_one({"_id": ids[n % len(ids)]}, {"$inc": {"n": 1}})

        async def read(n: int) -> None:
            await collection.find_one({"_id": ids[n % len(ids)]}, {"padding": 0})

        async def publish(n: int) -> None:
            message = aio_pika.Message(
                f'{{"n": {n}}}'.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(message, routing_key=queue_name)

        # Inserts first (the rest refers to them), then everything else interleaved.
        later = (
            [(update, n) for n in range(work.updates)]
            + [(read, n) for n in range(work.reads)]
            + [(publish, n) for n in range(work.publishes)]
        )
        later.sort(key=lambda job: job[1])
        mongo_cpu = site.cpu_seconds().get("mongo", 0.0)
        own_cpu = time.process_time()
        began = time.perf_counter()
        await _in_parallel([(insert, n) for n in range(work.inserts)], plan.concurrency)
        await _in_parallel(later, plan.concurrency)
        wall_s = time.perf_counter() - began
        cpu = {
            "mongo": site.cpu_seconds().get("mongo", 0.0) - mongo_cpu,
            "script": time.process_time() - own_cpu,
        }
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
        await client[site.database].drop_collection(collection_name)
        await client.close()
    return {
        "clips": work.clips,
        "inserts": work.inserts,
        "updates": work.updates,
        "reads": work.reads,
        "publishes": work.publishes,
        "concurrency": plan.concurrency,
        "wall_s": round(wall_s, 3),
        "clips_per_s": round(work.clips / wall_s, 2) if wall_s > 0 else None,
        "cpu_s_per_clip": {name: round(seconds / work.clips, 4) for name, seconds in cpu.items()},
    }


async def _in_parallel(jobs: list[tuple[Any, int]], concurrency: int) -> None:
    """Every job, ``concurrency`` workers pulling from one shared iterator."""
    pending = iter(jobs)

    async def worker() -> None:
        for job, n in pending:
            await job(n)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
