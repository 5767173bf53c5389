"""The dev tools' connections to RabbitMQ and MongoDB, each opened one way.

A tool that talks to a broker or a database for a moment (to delete a prefix's
queues, read dead letters, issue a key, drop a benchmark's database) opens it
with :func:`amqp` or :func:`mongo` and has it closed on the way out. The
services keep their own connection code (``reelflow_common.broker``,
``reelflow_common.mongo``); a tool that measures that code uses it directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from pymongo import AsyncMongoClient

from reelflow_common.mongo import close_client

#: how long a tool's connection waits for RabbitMQ to complete its handshake
AMQP_CONNECT_TIMEOUT_S = 15.0
#: how long one MongoDB operation of a tool may take (the client's ``timeoutMS``)
MONGO_TIMEOUT_S = 30.0


@asynccontextmanager
async def amqp(
    url: str, *, timeout_s: float = AMQP_CONNECT_TIMEOUT_S
) -> AsyncIterator[AbstractConnection]:
    """A connection to the broker at ``url``, closed on exit.

    Connecting raises what ``aio_pika.connect`` raises (``AMQPError``, ``OSError``,
    ``TimeoutError`` after ``timeout_s``). A close that fails is not raised: the
    connection is gone either way, and the work done on it stands.
    """
    connection = await aio_pika.connect(url, timeout=timeout_s)
    try:
        yield connection
    finally:
        with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError):
            await connection.close()


@asynccontextmanager
async def mongo(
    url: str, *, timeout_s: float = MONGO_TIMEOUT_S
) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A client of the MongoDB at ``url`` that reads and writes as the services' does
    (standard UUIDs, aware datetimes), closed on exit."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url,
        uuidRepresentation="standard",
        tz_aware=True,
        timeoutMS=int(timeout_s * 1000),
        appname="reelflow-devtools",
    )
    try:
        yield client
    finally:
        await close_client(client)
