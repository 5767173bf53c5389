"""A replica's own queue of project events: every replica of a service gets every event.

Exclusive and auto-delete (it lives and dies with the replica's connection) and
classic (exclusive queues cannot be quorum queues). Its name is chosen by the
caller, not the server: aio-pika's robust channel re-declares a queue under the
name it knows after a reconnect, and a readable name tells an operator whose
queue it is. Bounded: past ``max_length`` the oldest event is dropped, into
``overflow_to`` when given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue


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
