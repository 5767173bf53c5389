"""A notifier replica that falls behind keeps a bounded backlog and catches up from the store;
one that keeps up gets every event of the projects watched on it, and acknowledges every
delivery (in batches); its queue is bound to those projects only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.broker import amqp_channel
from reelflow_common.broker import amqp_connection as connect
from reelflow_common.messages import ClipUpdated, Event
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import Topology, declare_topology, event_routing_key
from reelflow_notifier.acks import Acks
from reelflow_notifier.fanout import fanout
from reelflow_notifier.hub import Hub
from tests.builders import clip_updated
from tests.integration.broker_control import close_connection_from_the_broker
from tests.waiting import eventually

pytestmark = pytest.mark.integration

BURST = 20
PREFETCH = 8
#: many times the prefetch, and not a multiple of a batch (half the prefetch)
LONG_BURST = 61


#: the project the tests' events are about (``clip_updated``'s), watched on the replica
PROJECT = "p1"


class NoListener:
    """A watcher that takes everything and does nothing with it."""

    def deliver(self, events: Sequence[Event]) -> None:
        pass

    def catch_up(self, project_id: str | None = None) -> None:
        pass


class RecordingHub(Hub):
    """A hub that remembers what it was asked to do; ``PROJECT`` is watched on it."""

    def __init__(self) -> None:
        super().__init__()
        self.routed: list[Event] = []
        self.catch_ups = 0
        #: projects whose watchers were told to catch up, one by one
        self.caught_up: list[str] = []
        self.add(PROJECT, NoListener())

    def catch_up(self, project_id: str) -> None:
        self.caught_up.append(project_id)
        super().catch_up(project_id)

    def route(self, events: Sequence[Event]) -> int:
        self.routed.extend(events)
        return super().route(events)

    def catch_up_all(self) -> None:
        self.catch_ups += 1
        super().catch_up_all()


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
                    routing_key=event_routing_key(event.message_type, event.project_id),
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
        async with fanout(
            amqp_connection, channel, topology, hub, max_length=2, prefetch=1, linger_s=0
        ):
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
        async with fanout(
            amqp_connection, channel, topology, hub, max_length=2, prefetch=1, linger_s=0
        ):
            publisher = await channel.get_exchange(topology.events_exchange, ensure=False)
            events = [clip_updated(seq) for seq in range(1, BURST + 1)]
            for event in events:  # one at a time: each is routed before the next is sent
                await publisher.publish(
                    aio_pika.Message(event.model_dump_json().encode(), type=event.message_type),
                    routing_key=event_routing_key(event.message_type, event.project_id),
                )

                def routed(e: ClipUpdated = event) -> bool:
                    return hub.routed[-1:] == [e]

                await eventually(routed, f"event {event.seq}")

    assert [event.seq for event in hub.routed] == list(range(1, BURST + 1))
    assert hub.catch_ups == 0


async def publish_all(channel: AbstractChannel, exchange: str, routing: str) -> None:
    """LONG_BURST messages, all published before any confirm is awaited."""
    target = (
        channel.default_exchange
        if exchange == ""
        else await channel.get_exchange(exchange, ensure=False)
    )
    await asyncio.gather(
        *(
            target.publish(
                aio_pika.Message(clip_updated(seq).model_dump_json().encode(), type="clip.updated"),
                routing_key=routing,
            )
            for seq in range(1, LONG_BURST + 1)
        )
    )


async def test_a_burst_many_times_the_prefetch_reaches_the_hub_whole_and_in_order(
    settings_for: Callable[..., Any], amqp_connection: AbstractRobustConnection
) -> None:
    # Each delivery past the prefetch needs earlier ones acknowledged: one never
    # acknowledged stalls the replica, one lost leaves a hole in the seqs.
    topology = Topology.from_settings(settings_for(TopologySettings))
    hub = RecordingHub()
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, topology)
        async with fanout(
            amqp_connection,
            channel,
            topology,
            hub,
            max_length=10_000,
            prefetch=PREFETCH,
            linger_s=0,
        ):
            await publish_all(
                channel, topology.events_exchange, event_routing_key("clip.updated", PROJECT)
            )
            await eventually(lambda: len(hub.routed) >= LONG_BURST, "the whole burst routed")

    assert [event.seq for event in hub.routed] == list(range(1, LONG_BURST + 1))
    assert hub.catch_ups == 0


async def test_after_a_burst_no_delivery_is_left_unacknowledged(
    amqp_connection: AbstractRobustConnection,
) -> None:
    publishing = await amqp_connection.channel(publisher_confirms=True)
    consuming = await amqp_connection.channel()
    await consuming.set_qos(prefetch_count=PREFETCH)
    # Exclusive: it outlives the consuming channel, not this connection.
    queue = await consuming.declare_queue(exclusive=True)
    acks = Acks(PREFETCH)
    handled: list[int] = []

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        handled.append(ClipUpdated.model_validate_json(incoming.body).seq)
        acks.routed(incoming)

    await queue.consume(on_message)
    await publish_all(publishing, "", queue.name)
    await eventually(lambda: len(handled) >= LONG_BURST, "the whole burst handled")
    assert handled == list(range(1, LONG_BURST + 1))
    # The tail of the burst (less than a batch) goes after ACK_DELAY_S, no later delivery needed.
    await eventually(lambda: acks.waiting == 0, "the tail acknowledged")

    # Closing the channel puts back whatever it never acknowledged.
    await consuming.close()
    left = await publishing.declare_queue(queue.name, passive=True)
    assert left.declaration_result.message_count == 0
    await publishing.close()


async def test_after_the_broker_drops_the_connection_every_watched_project_is_bound_again(
    settings_for: Callable[..., Any], amqp_connection: AbstractRobustConnection
) -> None:
    settings = settings_for(TopologySettings)
    topology = Topology.from_settings(settings)
    hub = RecordingHub()
    name = f"test-fanout-reconnect-{topology.prefix}"
    # Slow to come back: the watch below starts while the broker is away (its snapshot is
    # read at once), and its bind fails.
    async with (
        connect(settings, name=name, reconnect_interval_s=5.0) as connection,
        amqp_channel(connection) as channel,
    ):
        await declare_topology(channel, topology)
        async with fanout(
            connection, channel, topology, hub, max_length=100, prefetch=8, linger_s=0
        ):
            await close_connection_from_the_broker(name)
            await eventually(lambda: channel.is_closed, "the connection seen lost")
            hub.add("during", NoListener())
            await hub.ready("during")

            # Its bind is tried again until it holds; then its watchers catch up.
            await eventually(lambda: hub.catch_ups >= 1, "caught up after the reconnect")
            await eventually(lambda: "during" in hub.caught_up, "bound late, and caught up")
            events = [clip_updated(1), clip_updated(1, project_id="during")]
            publisher = await amqp_connection.channel()
            exchange = await publisher.get_exchange(topology.events_exchange, ensure=False)
            for event in events:
                await exchange.publish(
                    aio_pika.Message(event.model_dump_json().encode(), type=event.message_type),
                    routing_key=event_routing_key(event.message_type, event.project_id),
                )
            await eventually(lambda: len(hub.routed) >= 2, "both routed")
            await publisher.close()

    assert hub.routed == events
