"""A notifier replica that falls behind keeps a bounded backlog and catches up from the store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.broker import amqp_channel
from reelflow_common.messages import ClipUpdated, Event
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import Topology, declare_topology
from reelflow_notifier.fanout import fanout
from reelflow_notifier.hub import Hub
from tests.waiting import eventually

pytestmark = pytest.mark.integration

BURST = 20


class RecordingHub(Hub):
    """A hub that remembers what it was asked to do."""

    def __init__(self) -> None:
        super().__init__()
        self.routed: list[Event] = []
        self.catch_ups = 0

    def route(self, event: Event) -> int:
        self.routed.append(event)
        return super().route(event)

    def catch_up_all(self) -> None:
        self.catch_ups += 1
        super().catch_up_all()


def clip_updated(seq: int) -> ClipUpdated:
    return ClipUpdated.model_validate(
        {
            "project_id": "p1",
            "tenant_id": "t1",
            "seq": seq,
            "clip": {"task_uuid": "c1", "scene_index": 0, "status": "processing"},
            "counts": {"total_clips": 1, "completed": 0, "pending": 1, "failed": 0},
        }
    )


def publish_from_another_thread(amqp_url: str, exchange: str, events: list[ClipUpdated]) -> None:
    """Publish (confirmed) while this thread's caller blocks its own event loop."""

    async def publish() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange, ensure=False)
            for event in events:
                await target.publish(
                    aio_pika.Message(event.model_dump_json().encode(), type=event.message_type),
                    routing_key=event.message_type,
                )

    asyncio.run(publish())


def dropped() -> float:
    return REGISTRY.get_sample_value("reelflow_fanout_events_total", {"outcome": "dropped"}) or 0


async def test_a_replica_that_falls_behind_drops_the_oldest_and_catches_up(
    settings_for: Callable[..., Any], amqp_url: str, amqp_connection: AbstractRobustConnection
) -> None:
    topology = Topology.from_settings(settings_for(TopologySettings))
    hub = RecordingHub()
    dropped_before = dropped()
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)
        async with fanout(amqp_connection, channel, topology, hub, max_length=2, prefetch=1):
            events = [clip_updated(seq) for seq in range(1, BURST + 1)]
            # This loop cannot read while the thread publishes: the replica is behind.
            burst = threading.Thread(
                target=publish_from_another_thread,
                args=(amqp_url, topology.events_exchange, events),
            )
            burst.start()
            burst.join()

            await eventually(lambda: hub.catch_ups >= 1, "the replica told to catch up")
            await eventually(lambda: hub.routed[-1:] == events[-1:], "the newest event routed")

    # At most the prefetched event and the queue's two were kept; the oldest went.
    assert len(hub.routed) <= 3
    assert [event.seq for event in hub.routed] == sorted(event.seq for event in hub.routed)
    assert dropped() > dropped_before


async def test_a_replica_that_keeps_up_routes_every_event_and_never_catches_up(
    settings_for: Callable[..., Any], amqp_url: str, amqp_connection: AbstractRobustConnection
) -> None:
    topology = Topology.from_settings(settings_for(TopologySettings))
    hub = RecordingHub()
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)
        async with fanout(amqp_connection, channel, topology, hub, max_length=2, prefetch=1):
            publisher = await channel.get_exchange(topology.events_exchange, ensure=False)
            events = [clip_updated(seq) for seq in range(1, BURST + 1)]
            for event in events:  # one at a time: each is routed before the next is sent
                await publisher.publish(
                    aio_pika.Message(event.model_dump_json().encode(), type=event.message_type),
                    routing_key=event.message_type,
                )

                def routed(e: ClipUpdated = event) -> bool:
                    return hub.routed[-1:] == [e]

                await eventually(routed, f"event {event.seq}")

    assert [event.seq for event in hub.routed] == list(range(1, BURST + 1))
    assert hub.catch_ups == 0
