"""A worker's start (the submitter's and the poller's), in two steps its ``main()`` enters.

:func:`worker_serving`: the operations endpoints from the first moment (``/healthz``; a
``/readyz`` that names what is missing), MongoDB's client, the database clock, the topology.
Then the worker builds its stores on them, and :func:`worker_linked` takes their index
steps: the indexes are built in the background while it waits for RabbitMQ, opens the
worker's channels and declares the topology, and it returns once both are there. Two steps,
not one, because the index steps belong to stores made from what the first step yields.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from reelflow_common.broker import amqp_channel, amqp_connection
from reelflow_common.clock import DbClock
from reelflow_common.lifecycle import wait_for
from reelflow_common.mongo import Database, Indexes, mongo_database
from reelflow_common.ops import ReadinessCheck, amqp_ready, not_yet, ops_app, ops_server
from reelflow_common.settings import WorkerSettings
from reelflow_common.topology import Topology, declare_topology

#: the checks ``/readyz`` needs true for a 200: both. Without RabbitMQ a worker takes no
#: message and publishes none; without MongoDB it can record nothing.
READY_REQUIRES = frozenset({"rabbitmq", "mongodb"})


@dataclass(frozen=True)
class Serving:
    """A worker answering its probes: the database, its clock, the topology it declares."""

    db: Database
    #: local time until the first reading: the clock never waits for MongoDB
    clock: DbClock
    topology: Topology
    #: what ``/readyz`` reads: both ``not_yet`` until :func:`worker_linked` sets them
    readiness: dict[str, ReadinessCheck]


@dataclass(frozen=True)
class Linked:
    """A worker's link to RabbitMQ, its topology declared and its indexes built."""

    connection: AbstractRobustConnection
    #: one per prefetch given, in that order; the first declared the topology
    channels: list[AbstractRobustChannel]


@asynccontextmanager
async def worker_serving(
    settings: WorkerSettings, *, sock: socket.socket | None = None
) -> AsyncIterator[Serving]:
    """The operations server, bound first (``ops.PortTaken`` before anything connects), then
    MongoDB's client (it connects lazily) and the database clock; all closed on exit.

    ``sock``, an already bound socket, serves the operations endpoints instead of
    ``http_host``/``http_port`` (tests bind port 0 to get a free one).
    """
    readiness: dict[str, ReadinessCheck] = {"rabbitmq": not_yet, "mongodb": not_yet}
    async with (
        ops_server(
            ops_app(readiness, required=READY_REQUIRES),
            settings.http_host,
            settings.http_port,
            sock=sock,
        ),
        mongo_database(settings) as db,
        DbClock(db).running() as clock,
    ):
        yield Serving(db, clock, Topology.from_settings(settings), readiness)


@asynccontextmanager
async def worker_linked(
    serving: Serving,
    settings: WorkerSettings,
    *,
    name: str,
    stop: asyncio.Event,
    indexes: Sequence[Callable[[], Awaitable[None]]],
    prefetches: Sequence[int],
) -> AsyncIterator[Linked]:
    """Build ``indexes`` in the background (``mongodb`` ready once they exist and MongoDB
    answers), connect as ``name``, open a channel per one of ``prefetches`` (0: unbounded; consume()
    sets the prefetch of the channel it is given: one channel per consumer), declare the
    topology (``rabbitmq`` ready from then on: a message published after that waits for the
    worker), and wait for the indexes. Waits through RabbitMQ and MongoDB outages, however
    long; raises ``lifecycle.Stopped`` if ``stop`` is set first, having closed what it opened.
    """
    async with AsyncExitStack() as stack:
        built = await stack.enter_async_context(Indexes(serving.db, indexes).in_background())
        serving.readiness["mongodb"] = built.ready
        connection = await stack.enter_async_context(
            amqp_connection(settings, name=name, stop=stop)
        )
        channels = [
            await stack.enter_async_context(amqp_channel(connection, prefetch=each))
            for each in prefetches
        ]
        await wait_for(
            "rabbitmq", lambda: declare_topology(channels[0], serving.topology), stop=stop
        )
        serving.readiness["rabbitmq"] = amqp_ready(connection)
        await built.wait(stop=stop)
        yield Linked(connection, channels)
