"""The raw ceiling: reelflow's database and broker work for a run, done bare by a small script.

For one throughput run it repeats, on the same database server and the same
RabbitMQ, as many inserts, single-document updates (``update`` and
``findAndModify`` round trips alike), single-document reads and confirmed
publishes (persistent, to a quorum queue like reelflow's work queues) as the
server and the services counted, from ``concurrency`` workers at once. Nothing
else: no HTTP, no decisions, no provider. ``clips / wall`` is then the most any
pipeline doing that work could achieve here, and reelflow's throughput a
fraction of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient

from reelflow_devtools.bench.launcher import BenchStack


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
        ``project.finished``. A redelivered task would make this an overcount: more
        work for the ceiling, a lower share for the baseline.
        """
        kinds = run["db_ops_by_kind"]
        return cls(
            clips=run["clips"],
            inserts=kinds["insert"],
            updates=kinds["update"] + kinds["commands"],
            reads=kinds["queries"] + kinds["getmore"],
            publishes=run["provider_requests"] + run["projects"],
        )


@dataclass(frozen=True)
class CeilingPlan:
    concurrency: int = 32
    #: bytes of the document each insert writes (a project of a few scenes)
    document_bytes: int = 2000


async def run_ceiling(stack: BenchStack, work: Work, plan: CeilingPlan) -> dict[str, Any]:
    """Do ``work`` bare; the wall time and ``clips / wall``."""
    collection_name = f"ceiling_{uuid.uuid4().hex[:8]}"
    queue_name = f"{stack.config.amqp_prefix}ceiling.{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, timeoutMS=30_000)
    connection = await aio_pika.connect(stack.config.amqp_url, timeout=15)
    collection = client[stack.config.database][collection_name]
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
        mongo_cpu = stack.cpu_seconds().get("mongo", 0.0)
        own_cpu = time.process_time()
        began = time.perf_counter()
        await _in_parallel([(insert, n) for n in range(work.inserts)], plan.concurrency)
        await _in_parallel(later, plan.concurrency)
        wall_s = time.perf_counter() - began
        cpu = {
            "mongo": stack.cpu_seconds().get("mongo", 0.0) - mongo_cpu,
            "script": time.process_time() - own_cpu,
        }
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
        await client[stack.config.database].drop_collection(collection_name)
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
