"""Stacks sharing one broker, each under its own ``REELFLOW_AMQP_PREFIX``: the lock a
running stack holds on its prefix, who consumes a topology's queues, deleting them.

The lock is an exclusive queue named after the prefix (``Topology.stack_lock``):
the broker gives it to one connection at a time, refuses it to any other
(RESOURCE_LOCKED, 405, which closes the channel that asked), and deletes it when
its connection closes, however the process that held it ends.

Queues are asked about and deleted by name: listing them would need
``rabbitmqctl``, whose queries were seen to wedge RabbitMQ 3.10 while quorum
queues were being deleted.
"""

from __future__ import annotations

from collections.abc import Iterable

from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import ChannelNotFoundEntity
from aiormq.exceptions import ChannelLockedResource

from reelflow_common.topology import Topology


async def take_stack_lock(channel: AbstractChannel, topology: Topology) -> bool:
    """Hold ``topology``'s stack lock until the channel's connection closes; False when
    another connection holds it (the broker has then closed ``channel``)."""
    try:
        await channel.declare_queue(topology.stack_lock, exclusive=True)
    except ChannelLockedResource:
        return False
    return True


async def stack_lock_held(connection: AbstractConnection, topology: Topology) -> bool:
    """Whether another connection holds ``topology``'s stack lock now (a passive declare,
    which takes nothing)."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(topology.stack_lock, passive=True)
    except ChannelLockedResource:
        return True
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    return False  # a queue of that name no connection holds


async def consumers(connection: AbstractConnection, names: Iterable[str]) -> dict[str, int]:
    """The queues of ``names`` that have consumers now, with how many each (a queue that
    does not exist has none)."""
    found: dict[str, int] = {}
    for name in names:
        # A channel per queue: the broker closes the one a missing queue was asked on.
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            continue
        count = queue.declaration_result.consumer_count or 0
        await channel.close()
        if count:
            found[name] = count
    return found


async def delete_topology(connection: AbstractConnection, topology: Topology) -> int:
    """Delete every queue and exchange ``topology`` declares (those missing are no error);
    how many messages the queues held.

    Consumers of a deleted queue are cancelled: ask :func:`consumers` first. A tenant's
    submit lane is not known by name; the broker deletes it ``lane_expires_ms`` after its
    last consumer left.
    """
    channel = await connection.channel()
    try:
        messages = 0
        for name in topology.queue_names():
            deleted = await channel.queue_delete(name)
            messages += deleted.message_count or 0
        for exchange in topology.exchange_names():
            await channel.exchange_delete(exchange)
    finally:
        await channel.close()
    return messages
