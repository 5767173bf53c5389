"""This replica's own event queue: the events of the projects watched here, which it routes.

The queue is bound to each project a socket here watches, and no other
(:mod:`reelflow_notifier.bindings`), and to the events of publishers from
before per-project routing keys (``LEGACY_EVENT_BINDING``: every project's,
routed by the project header as before; none come once every publisher is
upgraded).

The queue is exclusive and auto-delete (it lives and dies with this replica's
connection) and classic (exclusive queues cannot be quorum queues). Its name is
chosen here, ``<prefix>notifier.fanout.<uuid>``, not by the server: aio-pika's
robust channel re-declares a queue under the name it knows after a reconnect,
and a readable name tells an operator whose queue it is.

Bounded at every step, so a replica that falls behind cannot grow its memory:
deliveries are acknowledged once routed, or held for their turn (together, see
:mod:`reelflow_notifier.acks`), with a prefetch, so the broker holds the
backlog, not this process (what is held back has a bound of its own,
:mod:`reelflow_notifier.reorder`); the queue holds at most
``max_length`` events and drops the oldest past that. Each dropped event is
dead-lettered into a second exclusive queue, ``….overflow``, which keeps only
the latest one: a signal, not a store. On that signal every connection catches
up from the store's event log (or gets a snapshot when the log no longer
reaches back), since a dropped event may be a project's last one and no later
event would reveal the gap.

Each connection also fills a gap in ``seq`` from the event log, and after a
reconnect every connection catches up from the store, for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from reelflow_common.broker.headers import header_text
from reelflow_common.broker.replica import declare_replica_queue
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import Event
from reelflow_common.messages import parse_event as parse_event_body
from reelflow_common.topology import HEADER_PROJECT_ID, LEGACY_EVENT_BINDING, Topology
from reelflow_common.tracing import Context, SpanKind, extract, is_sampled, span
from reelflow_notifier.acks import Acks
from reelflow_notifier.bindings import ProjectBindings
from reelflow_notifier.hub import Hub
from reelflow_notifier.metrics import FANOUT_EVENTS_TOTAL
from reelflow_notifier.reorder import Reorder

log = get_logger(__name__)
#: a stopping notifier gives up cancelling its consumers after this (the broker is away)
_CANCEL_TIMEOUT_S = 5.0


def parse_event(incoming: AbstractIncomingMessage) -> Event | None:
    """The event in a delivery; None for a type this notifier does not show or a bad body."""
    try:
        return parse_event_body(incoming.type, incoming.body)
    except ValidationError as exc:
        log.warning("fanout_event_invalid", message_type=incoming.type, errors=exc.error_count())
        return None


#: a delivery of the overflow queue: every connection catches up, in its place among the events
OVERFLOWED: Final = "overflowed"
#: an event to route, with the trace context to route it in (None: not traced)
Routed = tuple[Event, Context | None]


class Router:
    """Hands the fan-out's deliveries to the hub in order, a pass's worth at once, then
    acknowledges them.

    Some events are of projects no connection of this replica watches any
    more (a binding lingers, :mod:`reelflow_notifier.bindings`). The
    header says which project an event is about (``Message.headers``, set by
    the one publisher of events), so such an event is acknowledged without
    parsing its body, tracing or logging it: nothing here would have used it.
    The decision reads the hub when the delivery is taken, before the routing
    it replaces: a skipped event is one routing would have handed to no one,
    or to a watch that started after the decision, whose snapshot, read after
    it registered, already holds the change (ARCHITECTURE, data flow, the
    notifier). A delivery without the header (a publisher from before it) is
    parsed and routed as before.

    The deliveries taken in one pass of the event loop are routed together at
    its end (``call_soon``), and a project's events that came one after the
    other go to each of its watchers in one call (:meth:`Hub.route`): the
    poller stores the progress of a project's clips together, so a burst of
    up to a project's clip count of events comes at once, and each socket
    then costs the routing of one event and one write, not one per event. A
    burst routed while another is written waits for the pass after, and is
    routed together in turn: the longer a fan-out takes, the more it takes at
    once. Deliveries are routed, and then acknowledged, in the order they
    came: an acknowledgement with ``multiple`` settles every delivery before
    it (:mod:`reelflow_notifier.acks`). A traced event is routed on its own,
    in its span.

    An event that comes ahead of its project's next ``seq`` waits, briefly,
    for the ones before it (:mod:`reelflow_notifier.reorder`): concurrent
    writers publish a burst a little out of order, and a gap sends every
    watcher to the event log.
    """

    def __init__(self, hub: Hub, acks: Acks, queue_name: str) -> None:
        self._hub = hub
        self._acks = acks
        self._queue_name = queue_name
        #: this pass's deliveries, in order, each with the event to route, if any
        self._taken: list[tuple[AbstractIncomingMessage, Event | str | None]] = []
        #: events that came ahead of their project's next seq wait here (a routed event
        #: carries the trace context it is routed in, None if it is not traced)
        self._reorder: Reorder[Routed] = Reorder(lambda routed: routed[0])
        self._release: asyncio.TimerHandle | None = None
        self._closed = False
        # One series each, looked up once rather than per delivery.
        self._routed = FANOUT_EVENTS_TOTAL.labels(outcome="routed")
        self._unwatched = FANOUT_EVENTS_TOTAL.labels(outcome="unwatched")
        self._invalid = FANOUT_EVENTS_TOTAL.labels(outcome="invalid")

    async def on_message(self, incoming: AbstractIncomingMessage) -> None:
        # None without the header (an older publisher): parsed and routed as before.
        project_id = header_text(incoming.headers, HEADER_PROJECT_ID)
        if project_id is not None and not self._hub.watching(project_id):
            self._unwatched.inc()
            self._reorder.forget(project_id)
            self._take(incoming, None)
            return
        event = parse_event(incoming)
        if event is None:
            self._invalid.inc()
        self._take(incoming, event)

    async def on_overflow(self, incoming: AbstractIncomingMessage) -> None:
        """The fan-out queue dropped an event: every connection catches up from the store."""
        FANOUT_EVENTS_TOTAL.labels(outcome="dropped").inc()
        log.warning("fanout_overflowed", watched_projects=self._hub.watched())
        self._take(incoming, OVERFLOWED)

    def forget(self, project_id: str) -> None:
        """No more of ``project_id``'s events will come (its binding is gone): whatever
        comes of it next starts a new run of ``seq``."""
        self._reorder.forget(project_id)

    def reconnected(self) -> None:
        """The broker connection came back: events may have been lost on the way. What is
        held goes on, nothing is expected, and every connection catches up from the store."""
        self._route_in_order(self._reorder.reset())
        self._hub.catch_up_all()

    def close(self) -> None:
        """Stop waiting for anything held (the replica is stopping)."""
        self._closed = True
        if self._release is not None:
            self._release.cancel()
            self._release = None

    def _take(self, incoming: AbstractIncomingMessage, what: Event | str | None) -> None:
        if not self._taken:
            asyncio.get_running_loop().call_soon(self._route_taken)
        self._taken.append((incoming, what))

    def _route_taken(self) -> None:
        """Route what was taken, in order, then acknowledge it (held events count as handled:
        the broker must go on delivering, or the events they wait for would never come)."""
        taken, self._taken = self._taken, []
        now = asyncio.get_running_loop().time()
        ready: list[Routed] = []
        try:
            for incoming, what in taken:
                if isinstance(what, Event):
                    ready.extend(self._arrange(incoming, what, now))
                elif what == OVERFLOWED:
                    # Events were dropped: a gap held for will not fill; all catch up.
                    self._route_in_order([*ready, *self._reorder.reset()])
                    ready = []
                    self._hub.catch_up_all()
            self._route_in_order(ready)
        finally:
            # Acknowledged even if routing failed (logged): the consumer must not stall.
            for incoming, _what in taken:
                self._acks.routed(incoming)
            self._release_later()

    def _arrange(self, incoming: AbstractIncomingMessage, event: Event, now: float) -> list[Routed]:
        """What may be routed now that ``event`` has come; a failure (a bug, or a header
        that will not decode) is logged and the event goes on untraced, unordered."""
        try:
            parent = extract(incoming.headers)
            return self._reorder.arrange((event, parent if is_sampled(parent) else None), now)
        except Exception:
            log.exception(
                "fanout_arrange_failed",
                project_id=event.project_id,
                tenant_id=event.tenant_id,
                seq=event.seq,
            )
            return [(event, None)]

    def _release_later(self) -> None:
        at = self._reorder.next_release()
        if at is None or self._closed:
            return
        if self._release is not None:
            if self._release.when() <= at:
                return
            self._release.cancel()
        self._release = asyncio.get_running_loop().call_at(at, self._release_overdue)

    def _release_overdue(self) -> None:
        self._release = None
        if self._taken:
            self._route_taken()  # what came meanwhile first: it may fill the gaps
        try:
            self._route_in_order(self._reorder.overdue(asyncio.get_running_loop().time()))
        finally:
            self._release_later()

    def _route_in_order(self, ready: list[Routed]) -> None:
        """A run of one project's untraced events in one call; a traced event alone.

        A routing that fails (a bug) is logged, and the events after it still go.
        """
        burst: list[Event] = []
        for event, parent in ready:
            if burst and (parent is not None or event.project_id != burst[0].project_id):
                self._route(burst)
                burst = []
            if parent is not None:
                self._route_traced(event, parent)
            else:
                burst.append(event)
        if burst:
            self._route(burst)

    def _route(self, events: list[Event]) -> None:
        """One project's events, in order, to each of its watchers at once."""
        try:
            routed = self._hub.route(events)
        except Exception:
            log.exception(
                "fanout_route_failed",
                project_id=events[0].project_id,
                tenant_id=events[0].tenant_id,
            )
            return
        if log.is_enabled_for(logging.DEBUG):
            for event in events:
                log.debug(
                    "fanout_event_routed",
                    correlation_id=event.correlation_id,
                    project_id=event.project_id,
                    tenant_id=event.tenant_id,
                    seq=event.seq,
                    connections=routed,
                    routed_with=len(events),
                )
        (self._routed if routed else self._unwatched).inc(len(events))

    def _route_traced(self, event: Event, parent: Context) -> None:
        # Each connection's push of the event is a child of this span (Session.deliver).
        with (
            bound_context(
                correlation_id=event.correlation_id,
                project_id=event.project_id,
                tenant_id=event.tenant_id,
            ),
            span(
                f"{event.message_type} receive",
                kind=SpanKind.CONSUMER,
                parent=parent,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": self._queue_name,
                },
            ),
        ):
            try:
                routed = self._hub.route([event])
            except Exception:
                log.exception("fanout_route_failed")
                return
            log.debug("fanout_event_routed", seq=event.seq, connections=routed)
        (self._routed if routed else self._unwatched).inc()


@asynccontextmanager
async def fanout(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    topology: Topology,
    hub: Hub,
    *,
    max_length: int,
    prefetch: int,
    linger_s: float,
) -> AsyncIterator[str]:
    """Consume this replica's queue into ``hub`` until exit; yields the queue's name.

    ``prefetch`` (set on ``channel``, which nothing else consumes from) bounds
    the events this process holds at once.
    """
    await channel.set_qos(prefetch_count=prefetch)
    acks = Acks(prefetch)
    replica_id = uuid.uuid4().hex
    overflow = await channel.declare_queue(
        topology.fanout_overflow_queue(replica_id),
        durable=False,
        exclusive=True,
        auto_delete=True,
        arguments={"x-queue-type": "classic", "x-max-length": 1},
    )
    queue = await declare_replica_queue(
        channel,
        topology.fanout_queue(replica_id),
        exchange=topology.events_exchange,
        binding_keys=[LEGACY_EVENT_BINDING],
        max_length=max_length,
        overflow_to=overflow.name,
    )

    router = Router(hub, acks, queue.name)
    bindings = ProjectBindings(
        queue,
        topology.events_exchange,
        channel_open=lambda: not channel.is_closed,
        on_bound_late=hub.catch_up,
        on_unbound=router.forget,
        linger_s=linger_s,
    )

    async def on_reconnect(_connection: AbstractRobustConnection | None, /) -> None:
        # aio-pika restored the queue and the bindings it made; the binds the outage failed
        # are made, and only then does every connection catch up (ProjectBindings).
        log.warning("fanout_reconnected", watched_projects=hub.watched())
        await bindings.resume()
        router.reconnected()

    consumer_tags = [
        (overflow, await overflow.consume(router.on_overflow)),
        (queue, await queue.consume(router.on_message)),
    ]
    connection.reconnect_callbacks.add(on_reconnect)
    # Watches from before the queue, and from now on; the caller catches them up after.
    hub.attach(bindings)
    try:
        await bindings.want_all(hub.projects())
        log.info("fanout_started", queue=queue.name, max_length=max_length)
        yield queue.name
    finally:
        hub.attach(None)
        bindings.close()
        router.close()
        connection.reconnect_callbacks.discard(on_reconnect)
        # A robust channel waits for the connection to come back before it cancels:
        # during an outage a stopping notifier would wait for ever. One bound for all.
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                for consumed, tag in consumer_tags:
                    try:
                        await consumed.cancel(tag)
                    except (AMQPError, ChannelInvalidStateError, ConnectionError):
                        log.warning("fanout_cancel_failed", queue=consumed.name)
                await acks.close()
        except TimeoutError:
            log.warning("fanout_cancel_timed_out", queue=queue.name)
