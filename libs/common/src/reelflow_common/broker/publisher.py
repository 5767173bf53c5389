"""The one way to publish: persistent, confirmed, bounded in time, unroutable is an error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    HeadersType,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError
from aio_pika.exceptions import PublishError as ReturnedError

from reelflow_common.errors import TransientError
from reelflow_common.messages import Event, Message
from reelflow_common.metrics import PUBLISHED_TOTAL, PublishResult
from reelflow_common.topology import Topology, event_routing_key
from reelflow_common.tracing import Span, SpanKind, inject, span

CONTENT_TYPE = "application/json"

#: what a failed publish can raise underneath; all of it means "not known to be stored"
_PUBLISH_FAILURES = (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError)


class PublishError(TransientError):
    """Not confirmed by the broker (refused, timeout, lost connection) or could not route it."""


class Unroutable(PublishError):
    """No queue is bound to the routing key (a queue that was deleted, or never declared)."""


async def confirmed_together(*publishes: Awaitable[None]) -> None:
    """Await independent publishes side by side, so their confirms overlap rather than
    add up; when all have ended, raise the first failure in argument order (the others
    are not undone; a later failure is attached to it as a note)."""
    results = await asyncio.gather(*publishes, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        for later in failures[1:]:
            failures[0].add_note(f"also failed alongside: {later!r}")
        raise failures[0]


class Publisher:
    """Publishes commands to work queues and events to the event exchange.

    ``channel`` may be None at first, for a service that starts before RabbitMQ
    answers: every publish is then a :class:`PublishError` until :meth:`attach`.
    """

    def __init__(
        self, channel: AbstractChannel | None, topology: Topology, *, timeout_s: float
    ) -> None:
        self._channel = channel
        self._topology = topology
        self._timeout_s = timeout_s
        self._events: AbstractExchange | None = None

    @property
    def topology(self) -> Topology:
        """The queues this publisher sends to (and their wait-queue ladders)."""
        return self._topology

    def attach(self, channel: AbstractChannel) -> None:
        """Publish on ``channel`` from now on (a confirm-mode channel, see ``amqp_channel``)."""
        self._channel = channel
        self._events = None

    def _open_channel(self) -> AbstractChannel:
        if self._channel is None:
            _count_publish("any", "not_connected")
            raise PublishError("not connected to RabbitMQ yet")
        return self._channel

    async def send(
        self,
        work_queue: str,
        message: Message,
        *,
        delay_s: float | None = None,
        to: str | None = None,
    ) -> None:
        """Put a command on ``work_queue`` (unprefixed name), now or after about ``delay_s``.

        A delay goes through the work queue's wait queue whose TTL best fits it,
        so the actual delay is a rung of the queue's ladder, never more than asked
        unless ``delay_s`` is below the shortest rung. ``to``: the full name of
        another queue of the work queue's messages (a tenant's submit lane) to
        put it on instead, now; :class:`Unroutable` if there is no such queue. A lane has
        no wait queues: ``to`` with ``delay_s`` is a ``ValueError``, never a dropped delay.
        """
        if to is not None and delay_s is not None:
            raise ValueError(f"a delay ({delay_s} s) cannot go to {to}: it has no wait queues")
        if to is not None:
            routing_key = to
        elif delay_s is None:
            routing_key = self._topology.queue(work_queue)
        else:
            routing_key = self._topology.wait_queue_for(work_queue, delay_s)
        with _producer_span(work_queue, message):
            await self._publish(
                self._open_channel().default_exchange,
                _amqp_message(message),
                routing_key,
                mandatory=True,
                kind="command",
            )

    async def publish_event(self, event: Event) -> None:
        """Announce ``event`` on the event exchange, under its type and project
        (``topology.event_routing_key``); having no subscriber is fine."""
        if self._events is None:
            # Declared by declare_topology(); not re-checked on every publish.
            self._events = await self._open_channel().get_exchange(
                self._topology.events_exchange, ensure=False
            )
        with _producer_span(event.message_type, event):
            await self._publish(
                self._events,
                _amqp_message(event),
                event_routing_key(event.message_type, event.project_id),
                mandatory=False,
                kind="event",
            )

    async def publish_events(self, events: Iterable[Event]) -> None:
        """Announce each of ``events``, in order."""
        for event in events:
            await self.publish_event(event)

    async def signal(self, message: Message) -> None:
        """Tell every submitter replica (their signal queues); having none listening is fine."""
        exchange = await self._open_channel().get_exchange(
            self._topology.submitter_signals, ensure=False
        )
        await self._publish(exchange, _amqp_message(message), "", mandatory=False, kind="signal")

    async def republish(
        self,
        routing_key: str,
        original: AbstractIncomingMessage,
        *,
        headers: HeadersType,
        body: bytes | None = None,
    ) -> None:
        """Publish a received message again, same body (or ``body``) and properties, with
        ``headers``.

        No span of its own: the copy keeps the original's trace context in ``headers``,
        so its next consumer continues the trace of the request that started the chain.
        """
        message = aio_pika.Message(
            original.body if body is None else body,
            headers=headers,
            content_type=original.content_type,
            content_encoding=original.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=original.message_id,
            correlation_id=original.correlation_id,
            timestamp=original.timestamp,
            type=original.type,
            app_id=original.app_id,
        )
        await self._publish(
            self._open_channel().default_exchange,
            message,
            routing_key,
            mandatory=True,
            kind="retry",
        )

    async def _publish(
        self,
        exchange: AbstractExchange,
        message: aio_pika.Message,
        routing_key: str,
        *,
        mandatory: bool,
        kind: str,
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await exchange.publish(message, routing_key, mandatory=mandatory)
        except ReturnedError as exc:
            _count_publish(kind, "unroutable")
            raise Unroutable(f"no queue for routing key {routing_key!r}") from exc
        except DeliveryError as exc:
            # A nack: the queue is full (x-overflow reject-publish) or the broker is in trouble.
            _count_publish(kind, "refused")
            raise PublishError(f"broker refused the publish to {routing_key!r}") from exc
        except _PUBLISH_FAILURES as exc:
            _count_publish(kind, "unconfirmed")
            raise PublishError(f"publish to {routing_key!r} not confirmed: {exc!r}") from exc
        _count_publish(kind, "confirmed")


def _count_publish(kind: str, result: PublishResult) -> None:
    PUBLISHED_TOTAL.labels(kind=kind, result=result).inc()


def _producer_span(destination: str, message: Message) -> AbstractContextManager[Span]:
    return span(
        f"{destination} publish",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.destination.name": destination,
            "messaging.message.id": message.message_id,
        },
    )


def _amqp_message(message: Message) -> aio_pika.Message:
    """``message`` with its correlation headers and the current trace context."""
    headers: dict[str, Any] = dict(message.headers())
    inject(headers)
    return aio_pika.Message(
        message.model_dump_json().encode(),
        headers=headers,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.occurred_at,
        type=message.message_type,
    )
