"""The topology declared on the real broker: idempotent, with the names services expect."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection
from structlog.testing import capture_logs

from reelflow_common.broker import Publisher, amqp_channel
from reelflow_common.topology import SUBMIT_CLIP, WORK_QUEUES, Topology, declare_topology
from tests.integration.sample_messages import submit_clip

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


async def test_a_queue_an_earlier_release_made_otherwise_is_used_as_it_is(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    work_queue = topology.queue(SUBMIT_CLIP)
    async with amqp_channel(amqp_connection) as channel:
        # As the first release declared it: delivery limit 5, no length limit.
        await channel.declare_queue(
            work_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 5,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topology.dead_letter_queue(SUBMIT_CLIP),
            },
        )

    async with amqp_channel(amqp_connection) as channel:
        with capture_logs() as logs:
            await declare_topology(channel, topology)

        outdated = [line for line in logs if line["event"] == "queue_arguments_outdated"]
        assert [line["queue"] for line in outdated] == [work_queue]
        assert outdated[0]["log_level"] == "error"
        # The channel the broker closed over the refused declare works again.
        await Publisher(channel, topology, timeout_s=5).send(SUBMIT_CLIP, submit_clip("t1"))
        queue = await channel.get_queue(work_queue, ensure=False)
        assert await queue.get(no_ack=True, fail=False) is not None
        for name in topology.queue_names():  # and everything else was declared
            await channel.get_queue(name)
