"""The one acknowledgement policy: handlers never ack, nack or reject.

=================================  ==========================================
what happened                      what the consumer does
=================================  ==========================================
handler returned                   ack
body not JSON / not the model /    reject → ``<queue>.dlq``, never retried
wrong ``type`` / ``InvalidMessage``
transient failure (outage)         republish to the wait queue with
                                   ``x-reelflow-retries`` + 1, then ack;
                                   retried for as long as the outage lasts
anything else (a bug)              nack + requeue; on the last allowed
                                   delivery reject → ``<queue>.dlq``
=================================  ==========================================

Publishing the retry before acknowledging the original means a crash in
between makes a duplicate, never a loss; handlers are idempotent for that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, HeadersType
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from reelflow_common.broker.policy import is_transient, retry_delay_ms
from reelflow_common.broker.publisher import Publisher, PublishError
from reelflow_common.errors import InvalidMessage
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import Message
from reelflow_common.metrics import MESSAGE_SECONDS, MESSAGES_TOTAL
from reelflow_common.topology import (
    HEADER_PROJECT_ID,
    HEADER_REQUEST_ID,
    HEADER_RETRIES,
    HEADER_TASK_UUID,
    Topology,
)

M = TypeVar("M", bound=Message)

#: set by quorum queues on a redelivery: how many earlier deliveries failed
HEADER_DELIVERY_COUNT = "x-delivery-count"
_CANCEL_TIMEOUT_S = 5.0

log = get_logger(__name__)


async def consume(
    channel: AbstractChannel,
    topology: Topology,
    work_queue: str,
    model: type[M],
    handler: Callable[[M], Awaitable[None]],
    *,
    publisher: Publisher,
    concurrency: int,
    stop: asyncio.Event,
    drain_timeout_s: float = 20.0,
) -> None:
    """Handle messages of ``work_queue`` (unprefixed name) until ``stop`` is set, then drain.

    Up to ``concurrency`` messages are handled at once. After ``stop``, no new
    message is taken; handlers still running get ``drain_timeout_s`` to finish
    and are cancelled after that (their messages go back to the queue when the
    channel closes). The prefetch applies per consumer, but a robust channel
    restores only the last one set after a reconnect: consumers sharing a
    channel should use the same ``concurrency``.
    """
    policy = _Policy(topology, work_queue, model, handler, publisher)
    in_flight: set[asyncio.Task[Any]] = set()

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None  # aio-pika runs every delivery in a task of its own
        in_flight.add(task)
        try:
            await policy.handle(incoming)
        finally:
            in_flight.discard(task)

    await channel.set_qos(prefetch_count=concurrency)
    queue = await channel.get_queue(topology.queue(work_queue))
    consumer_tag = await queue.consume(on_message)
    log.info("consumer_started", queue=work_queue, concurrency=concurrency)
    try:
        await stop.wait()
    finally:
        await _cancel(channel, queue, consumer_tag, work_queue)
        await _drain(in_flight, work_queue, drain_timeout_s)
    log.info("consumer_stopped", queue=work_queue)


async def _cancel(
    channel: AbstractChannel, queue: AbstractQueue, consumer_tag: str, work_queue: str
) -> None:
    if channel.is_closed:  # nothing more can arrive
        return
    try:
        # A robust channel waits for the connection to come back before it
        # cancels; during an outage that could be forever.
        async with asyncio.timeout(_CANCEL_TIMEOUT_S):
            await queue.cancel(consumer_tag)
    except (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError):
        log.warning("consumer_cancel_failed", queue=work_queue)


async def _drain(tasks: set[asyncio.Task[Any]], work_queue: str, timeout_s: float) -> None:
    if not tasks:
        return
    log.info("consumer_draining", queue=work_queue, in_flight=len(tasks))
    _done, pending = await asyncio.wait(set(tasks), timeout=timeout_s)
    if pending:
        log.warning("consumer_drain_timed_out", queue=work_queue, cancelled=len(pending))
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=_CANCEL_TIMEOUT_S)


class _Policy:
    """Parses, calls the handler, and settles one delivery."""

    def __init__(
        self,
        topology: Topology,
        work_queue: str,
        model: type[M],
        handler: Callable[[M], Awaitable[None]],
        publisher: Publisher,
    ) -> None:
        self._topology = topology
        self._queue = work_queue
        self._model: type[Message] = model
        # The handler's parameter type matches ``model``; consume()'s signature checks that.
        self._handler: Callable[[Any], Awaitable[None]] = handler
        self._publisher = publisher

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        headers = incoming.headers or {}
        started = time.perf_counter()
        with bound_context(
            request_id=_text(headers.get(HEADER_REQUEST_ID)),
            project_id=_text(headers.get(HEADER_PROJECT_ID)),
            task_uuid=_text(headers.get(HEADER_TASK_UUID)),
        ):
            outcome = await self._settle(incoming, headers)
            elapsed = time.perf_counter() - started
            MESSAGES_TOTAL.labels(queue=self._queue, outcome=outcome).inc()
            MESSAGE_SECONDS.labels(queue=self._queue).observe(elapsed)
            log.info(
                "message_handled",
                queue=self._queue,
                outcome=outcome,
                duration_ms=round(elapsed * 1000, 1),
                message_id=incoming.message_id,
                message_type=incoming.type,
            )

    async def _settle(self, incoming: AbstractIncomingMessage, headers: HeadersType) -> str:
        try:
            message = self._parse(incoming)
            await self._handler(message)
        except InvalidMessage as exc:
            log.warning("message_rejected", queue=self._queue, reason=str(exc))
            return await _act(incoming.reject(requeue=False), "rejected")
        except Exception as exc:
            if is_transient(exc):
                return await self._retry(incoming, headers, exc)
            return await self._crashed(incoming, headers)
        return await _act(incoming.ack(), "acked")

    def _parse(self, incoming: AbstractIncomingMessage) -> Message:
        if incoming.type != self._model.message_type:
            raise InvalidMessage(
                f"type {incoming.type!r} where {self._model.message_type!r} was expected"
            )
        try:
            return self._model.model_validate_json(incoming.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            raise InvalidMessage(f"not a valid {self._model.__name__}: {problems}") from exc

    async def _retry(
        self, incoming: AbstractIncomingMessage, headers: HeadersType, exc: Exception
    ) -> str:
        ladder = self._topology.ladders.get(self._queue)
        if not ladder:  # a queue without wait queues cannot be retried later
            return await self._crashed(incoming, headers)
        retries = _count(headers.get(HEADER_RETRIES))
        delay_ms = retry_delay_ms(ladder, retries)
        # Broker bookkeeping (x-death, x-delivery-count) describes the old copy, not this one.
        forwarded: dict[str, Any] = {k: v for k, v in headers.items() if not k.startswith("x-")}
        forwarded[HEADER_RETRIES] = retries + 1
        try:
            await self._publisher.republish(
                self._topology.wait_queue(self._queue, delay_ms), incoming, headers=forwarded
            )
        except PublishError as publish_exc:
            log.warning(
                "message_retry_failed", queue=self._queue, error=str(publish_exc), cause=repr(exc)
            )
            return await _act(incoming.nack(requeue=True), "requeued")
        log.warning(
            "message_retry_scheduled",
            queue=self._queue,
            retries=retries + 1,
            delay_ms=delay_ms,
            error=f"{type(exc).__name__}: {exc}",
        )
        return await _act(incoming.ack(), "retried")

    async def _crashed(self, incoming: AbstractIncomingMessage, headers: HeadersType) -> str:
        deliveries = _count(headers.get(HEADER_DELIVERY_COUNT)) + 1
        if deliveries >= self._topology.max_deliveries:
            log.exception(
                "message_dead_lettered",
                queue=self._queue,
                reason="handler failed on every delivery",
                deliveries=deliveries,
            )
            return await _act(incoming.reject(requeue=False), "dead_lettered")
        log.exception("message_failed", queue=self._queue, deliveries=deliveries)
        return await _act(incoming.nack(requeue=True), "requeued")


async def _act(settle: Awaitable[None], outcome: str) -> str:
    """Ack/nack/reject; if the channel is gone the broker redelivers the message anyway."""
    try:
        await settle
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        log.warning("message_settle_failed", outcome=outcome, error=repr(exc))
        return "unsettled"
    return outcome


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _count(value: Any) -> int:
    """A non-negative counter header; anything unreadable counts as zero."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
