"""The submitter reports the backlog in its tenants' lanes, where its submits wait.

The sorter empties the shared queue at broker speed, so a backlog is in the lanes, and
the lag alerts see it only through these gauges.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.broker import Publisher, amqp_channel
from reelflow_common.messages import SubmitClip
from reelflow_common.topology import Topology
from reelflow_submitter.lanes import Lanes, lane_depths
from tests.integration.sample_messages import submit_clip
from tests.integration.worker_helpers import running
from tests.waiting import eventually

pytestmark = pytest.mark.integration

TENANTS = {"tenant-a": 3, "tenant-b": 5}


@pytest.fixture
async def channel(channel: AbstractChannel, topology: Topology) -> AsyncIterator[AbstractChannel]:
    """The integration tests' channel; the lanes made here are deleted afterwards."""
    yield channel
    for tenant_id in [*TENANTS, "tenant-gone"]:
        await channel.queue_delete(topology.lane_queue(tenant_id))


async def ready(channel: AbstractChannel, queue: str) -> int:
    declared = await (await channel.get_underlay_channel()).queue_declare(queue, passive=True)
    return declared.message_count or 0


async def test_the_lanes_backlog_is_reported_as_their_sum_and_their_largest(
    amqp_connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology
) -> None:
    stop, release = asyncio.Event(), asyncio.Event()
    handling: set[str] = set()

    async def stuck(message: SubmitClip) -> None:  # a submit that does not come back
        handling.add(message.tenant_id)
        await release.wait()

    async with amqp_channel(amqp_connection) as lane_channel:
        lanes = Lanes(
            declare_channel=channel,
            consume_channel=lane_channel,
            topology=topology,
            publisher=Publisher(channel, topology, timeout_s=10),
            handler=stuck,
            tenant_concurrency=1,
            stop=stop,
            drain_timeout_s=1,
        )
        async with running(lanes.run(), stop):
            for tenant_id, count in TENANTS.items():
                lane = await lanes.open(tenant_id, announce=False)
                for n in range(count):
                    message = submit_clip(f"{tenant_id}-{n}", tenant_id=tenant_id)
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            message.model_dump_json().encode(), type=message.message_type
                        ),
                        routing_key=lane,
                    )
            await eventually(lambda: handling == set(TENANTS), "one submit of each lane taken")
            names = [topology.lane_queue(tenant_id) for tenant_id in TENANTS]

            async def all_but_one_ready() -> bool:
                return [await ready(channel, name) for name in names] == [2, 4]

            await eventually(all_but_one_ready, "the rest of each lane waiting")

            # A lane deleted under its consumer (expired, say) is skipped, not fatal.
            gone = topology.lane_queue("tenant-gone")
            assert await lane_depths(amqp_connection, [names[0], gone, names[1]]) == [2, 4]
            assert await lanes.report_depths(amqp_connection) == [2, 4]
            release.set()

    lanes_ready = REGISTRY.get_sample_value(
        "reelflow_queue_ready_messages", {"queue": "submitter.submit_clip.lanes"}
    )
    assert (lanes_ready, REGISTRY.get_sample_value("reelflow_lane_ready_messages_max")) == (6, 4)
