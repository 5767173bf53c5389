"""This replica's own event queue: every project event reaches every replica, which routes it.

The queue is exclusive and auto-delete (it lives and dies with this replica's
connection) and classic (exclusive queues cannot be quorum queues). Its name is
chosen here, ``<prefix>notifier.fanout.<uuid>``, not by the server: aio-pika's
robust channel re-declares a queue under the name it knows after a reconnect,
and a readable name tells an operator whose queue it is.

Deliveries are not acknowledged (``no_ack``): the queue is exclusive, so an
unacknowledged event could only ever go back to this same consumer, and one
lost with a dead connection is recovered anyway. Each connection fills a gap in
``seq`` from the store's event log, and after a reconnect every connection
catches up from the store, since the last event of a project may be among those
lost (no later event would reveal the gap).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from reelflow_common.logging import get_logger
from reelflow_common.messages import Event
from reelflow_common.messages import parse_event as parse_event_body
from reelflow_common.topology import EVENT_BINDING_KEYS, Topology
from reelflow_notifier.hub import Hub
from reelflow_notifier.metrics import FANOUT_EVENTS_TOTAL

log = get_logger(__name__)


def parse_event(incoming: AbstractIncomingMessage) -> Event | None:
    """The event in a delivery; None for a type this notifier does not show or a bad body."""
    try:
        return parse_event_body(incoming.type, incoming.body)
    except ValidationError as exc:
        log.warning("fanout_event_invalid", message_type=incoming.type, errors=exc.error_count())
        return None


@asynccontextmanager
async def fanout(
    connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology, hub: Hub
) -> AsyncIterator[str]:
    """Consume this replica's queue into ``hub`` until exit; yields the queue's name."""
    queue = await channel.declare_queue(
        topology.fanout_queue(uuid.uuid4().hex),
        durable=False,
        exclusive=True,
        auto_delete=True,
        arguments={"x-queue-type": "classic"},
    )
    for key in EVENT_BINDING_KEYS:
        await queue.bind(topology.events_exchange, key)

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        # No await before routing: aio-pika starts one task per delivery, in order,
        # so events reach the hub in the order the queue holds them.
        event = parse_event(incoming)
        if event is None:
            FANOUT_EVENTS_TOTAL.labels(outcome="invalid").inc()
            return
        routed = hub.route(event)
        FANOUT_EVENTS_TOTAL.labels(outcome="routed" if routed else "unwatched").inc()

    async def on_reconnect(_connection: AbstractRobustConnection | None, /) -> None:
        log.warning("fanout_reconnected", watched_projects=hub.watched())
        hub.catch_up_all()

    consumer_tag = await queue.consume(on_message, no_ack=True)
    connection.reconnect_callbacks.add(on_reconnect)
    log.info("fanout_started", queue=queue.name)
    try:
        yield queue.name
    finally:
        connection.reconnect_callbacks.discard(on_reconnect)
        try:
            await queue.cancel(consumer_tag)
        except (AMQPError, ChannelInvalidStateError, ConnectionError):
            log.warning("fanout_cancel_failed")
