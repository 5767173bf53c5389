"""The topology declared on the real broker: idempotent, with the names services expect."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from reelflow_common.broker import amqp_channel
from reelflow_common.topology import WORK_QUEUES, Topology, declare_topology

pytestmark = pytest.mark.integration


async def test_declaring_twice_is_harmless_and_creates_every_queue(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)
        await declare_topology(channel, topology)

        names = [topology.events_exchange]
        for work_queue in WORK_QUEUES:
            names += [topology.queue(work_queue), topology.dead_letter_queue(work_queue)]
            names += [topology.wait_queue(work_queue, ms) for ms in topology.ladders[work_queue]]
        # Passive declarations close the channel if a name is missing.
        await channel.get_exchange(topology.events_exchange)
        for name in names[1:]:
            queue = await channel.get_queue(name)
            assert queue.name == name


async def test_every_name_carries_the_prefix(
    amqp_connection: AbstractRobustConnection, topology: Topology, amqp_prefix: str
) -> None:
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)

    assert topology.events_exchange.startswith(amqp_prefix)
    for work_queue in WORK_QUEUES:
        assert topology.queue(work_queue).startswith(amqp_prefix)
        assert topology.wait_queue_for(work_queue, 1).startswith(amqp_prefix)
