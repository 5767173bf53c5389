"""A replica's own queue of project events: every replica of a service gets every event.

Exclusive and auto-delete (it lives and dies with the replica's connection) and
classic (exclusive queues cannot be quorum queues). Its name is chosen by the
caller, not the server: aio-pika's robust channel re-declares a queue under the
name it knows after a reconnect, and a readable name tells an operator whose
queue it is. Bounded: past ``max_length`` the oldest event is dropped, into
``overflow_to`` when given.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

#: hints a replica queue of signals or wake-ups holds at most; past it the oldest is
#: dropped (each consumer has a safety net for a lost one: a re-announcement, a re-read)
HINT_QUEUE_MAX_LENGTH = 10_000


async def declare_replica_queue(
    channel: AbstractChannel,
    name: str,
    *,
    exchange: str,
    binding_keys: Iterable[str],
    max_length: int,
    overflow_to: str | None = None,
) -> AbstractQueue:
    """Declare ``name`` and bind it to ``exchange`` under each of ``binding_keys``."""
    arguments: dict[str, Any] = {
        "x-queue-type": "classic",
        "x-max-length": max_length,
        "x-overflow": "drop-head",
    }
    if overflow_to is not None:
        arguments |= {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": overflow_to}
    queue = await channel.declare_queue(
        name, durable=False, exclusive=True, auto_delete=True, arguments=arguments
    )
    for key in binding_keys:
        await queue.bind(exchange, key)
    return queue


@asynccontextmanager
async def consuming_replica_queue(
    channel: AbstractChannel,
    name: str,
    on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
    *,
    exchange: str,
    binding_keys: Iterable[str],
    max_length: int,
) -> AsyncIterator[str]:
    """Declare and bind ``name``, feed its messages to ``on_message`` until exit; yields the name.

    Without acknowledgements: what such a queue carries is a hint (an event, a signal)
    that ``on_message`` applies at once in memory, so nothing piles up in the process.
    """
    try:
        queue = await declare_replica_queue(
            channel, name, exchange=exchange, binding_keys=binding_keys, max_length=max_length
        )
        tag = await queue.consume(on_message, no_ack=True)
    except BaseException:
        # Half set up (declared, maybe bound): no exclusive queue stays bound behind it.
        with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
            await channel.queue_delete(name)
        raise
    try:
        yield queue.name
    finally:
        # A channel lost meanwhile took the queue with it (exclusive): nothing to cancel.
        with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
            await queue.cancel(tag)
