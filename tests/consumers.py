"""A consumer on a stack's work queue, as a running stack's submitter has one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from reelflow_common.topology import SUBMIT_CLIP, Topology


@asynccontextmanager
async def consuming(amqp_url: str, prefix: str) -> AsyncIterator[str]:
    """A consumer on ``prefix``'s submit queue while the block runs; the queue's name."""
    name = Topology.named(prefix).queue(SUBMIT_CLIP)
    connection = await aio_pika.connect(amqp_url, timeout=15)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, auto_delete=True)
        await queue.consume(_ignored, no_ack=True)
        yield name
    finally:
        try:
            cleanup = await connection.channel()
            await cleanup.queue_delete(name)
        finally:
            await connection.close()


async def _ignored(_message: AbstractIncomingMessage) -> None:
    pass
