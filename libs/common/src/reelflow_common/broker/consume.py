"""The one acknowledgement policy: handlers never ack, nack or reject.

=================================  ==========================================
what happened                      what the consumer does
=================================  ==========================================
handler returned                   ack
body not JSON / not the model /    reject → ``<queue>.dlq``, never retried
wrong ``type`` / ``InvalidMessage``
transient failure (an outage)      republish to the wait queue with
                                   ``x-reelflow-retries`` + 1, then ack;
                                   retried for as long as the outage lasts
anything else (a bug)              republish to the wait queue with
                                   ``x-reelflow-failures`` + 1, then ack; the
                                   ``max_deliveries``-th failure is rejected
                                   → ``<queue>.dlq`` with a log line
=================================  ==========================================

Publishing the copy before acknowledging the original means a crash in
between makes a duplicate, never a loss; handlers are idempotent for that.

A handler that did part of its message (the checks of a ``CheckClips`` that
went through) raises :class:`PartlyHandled`: a copy then carries each failed
part alone, retried, counted or dead-lettered as that part's error says, so
the part that was done is never done again.

When the broker refuses the copy (unconfirmed, queue full, connection lost),
the original is neither acked nor nacked: the consumer waits (``Topology.retry``)
and publishes again, in-process, until the broker takes it, the delivery's
channel dies (the broker then redelivers the original), or ``stop`` is set (the
original goes back when the channel closes). So a broker problem never spends a
message's failure count. Bugs are counted in our own header, never from the
broker's ``x-delivery-count``, which also counts the redeliveries of lost
connections; the broker's ``x-delivery-limit`` stays, far higher, as the
backstop for a message that crashes its consumer outright (see
``topology.BACKSTOP_DELIVERY_LIMIT``).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, HeadersType
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from reelflow_common.broker.dlq import dead_letter_name
from reelflow_common.broker.headers import header_text
from reelflow_common.broker.publisher import Publisher, PublishError
from reelflow_common.errors import InvalidMessage
from reelflow_common.lifecycle import stopped_within
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import Message
from reelflow_common.metrics import MESSAGE_SECONDS, MESSAGES_TOTAL, MessageOutcome
from reelflow_common.topology import (
    HEADER_CORRELATION_ID,
    HEADER_FAILURES,
    HEADER_PREFIX,
    HEADER_PROJECT_ID,
    HEADER_REDELIVERED,
    HEADER_REQUEUED,
    HEADER_RETRIES,
    HEADER_TASK_UUID,
    HEADER_TENANT_ID,
    Topology,
)
from reelflow_common.tracing import SpanKind, extract, mark_error, span
from reelflow_common.transient import is_transient

M = TypeVar("M", bound=Message)
N = TypeVar("N", bound=Message)

_DELIVERY: contextvars.ContextVar[AbstractIncomingMessage] = contextvars.ContextVar("delivery")
_CANCEL_TIMEOUT_S = 5.0
#: outcomes whose consumer span is marked failed (a retry after an outage is not a failure)
_FAILED_OUTCOMES: frozenset[MessageOutcome] = frozenset({"rejected", "failed", "dead_lettered"})
#: a message whose parts ended differently counts as the first of these among them
_WORST_FIRST: tuple[MessageOutcome, ...] = ("dead_lettered", "failed", "retried")

log = get_logger(__name__)


class PartlyHandled(Exception):
    """A handler did part of its message and failed on the rest.

    ``parts``: what is left, each a message of the same type as the one handled
    (its copy keeps the original's AMQP ``type``) with the error it failed on. The
    policy goes on with each part as it would with a whole message for its error:
    retried after an outage, its failure counted after a bug, dead-lettered at the
    last; then the original is acknowledged.
    """

    def __init__(self, parts: list[tuple[Exception, Message]]) -> None:
        super().__init__("; ".join(f"{rest.message_type}: {cause!r}" for cause, rest in parts))
        self.parts = parts


async def consume(
    channel: AbstractChannel,
    topology: Topology,
    work_queue: str,
    model: type[M] | tuple[type[M], type[N]],
    handler: Callable[[M | N], Awaitable[None]],
    *,
    publisher: Publisher,
    concurrency: int,
    stop: asyncio.Event,
    drain_timeout_s: float = 20.0,
    source: str | None = None,
) -> None:
    """Handle messages of ``work_queue`` (unprefixed name) until ``stop`` is set, then drain.

    ``model``: the message the queue carries, or the two (each known by its AMQP
    ``type``) when it carries two kinds.

    ``source`` (a full queue name) is consumed instead of the work queue itself, with
    the work queue's policy: its retries go to the work queue's wait ladder (a
    tenant's submit lane is consumed so, see ``reelflow_submitter.lanes``).

    Up to ``concurrency`` messages are handled at once. After ``stop``, no new
    message is taken; handlers still running get ``drain_timeout_s`` to finish
    and are cancelled after that (their messages go back to the queue when the
    channel closes). The prefetch applies per consumer, but a robust channel
    restores only the last one set after a reconnect: consumers sharing a
    channel should use the same ``concurrency``.
    """
    policy = _Policy(topology, work_queue, model, handler, publisher, stop)
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
    queue = await channel.get_queue(source or topology.queue(work_queue))
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
        model: type[Message] | tuple[type[Message], ...],
        handler: Callable[[Any], Awaitable[None]],
        publisher: Publisher,
        stop: asyncio.Event,
    ) -> None:
        self._topology = topology
        self._queue = work_queue
        # A work queue without a ladder could not be retried: refuse to consume it at all.
        self._backoff = topology.backoffs[work_queue]
        models: tuple[type[Message], ...] = model if isinstance(model, tuple) else (model,)
        self._models = {kind.message_type: kind for kind in models}
        if len(self._models) != len(models):
            raise ValueError(f"two models of {work_queue} have the same message type")
        # The handler's parameter type matches ``model``; consume()'s signature checks that.
        self._handler = handler
        self._publisher = publisher
        self._stop = stop

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        headers = incoming.headers or {}
        started = time.perf_counter()
        with (
            bound_context(
                correlation_id=header_text(headers, HEADER_CORRELATION_ID),
                project_id=header_text(headers, HEADER_PROJECT_ID),
                tenant_id=header_text(headers, HEADER_TENANT_ID),
                task_uuid=header_text(headers, HEADER_TASK_UUID),
            ),
            span(
                f"{self._queue} process",
                kind=SpanKind.CONSUMER,
                parent=extract(headers),
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": self._queue,
                    "messaging.message.id": incoming.message_id or "",
                },
            ) as current,
        ):
            outcome = await self._settle(incoming, headers)
            current.set_attribute("reelflow.outcome", outcome)
            if outcome in _FAILED_OUTCOMES:
                mark_error(current, outcome)
            elapsed = time.perf_counter() - started
            MESSAGES_TOTAL.labels(queue=self._queue, outcome=outcome).inc()
            MESSAGE_SECONDS.labels(queue=self._queue).observe(elapsed)
            # Acked is every message's usual end (a hung clip's every poll): debug, counted in
            # MESSAGES_TOTAL; the others say something went otherwise, and stay at info.
            level = log.debug if outcome == "acked" else log.info
            level(
                "message_handled",
                queue=self._queue,
                outcome=outcome,
                duration_ms=round(elapsed * 1000, 1),
                message_id=incoming.message_id,
                message_type=incoming.type,
            )

    async def _settle(
        self, incoming: AbstractIncomingMessage, headers: HeadersType
    ) -> MessageOutcome:
        token = _DELIVERY.set(incoming)
        try:
            message = self._parse(incoming)
            await self._handler(message)
        except InvalidMessage as exc:
            log.warning(
                "message_rejected",
                queue=self._queue,
                reason=str(exc),
                # as dlq list names it
                message_id=dead_letter_name(incoming.message_id, incoming.body),
                message_type=incoming.type,
            )
            return await _act(incoming.reject(requeue=False), "rejected")
        except PartlyHandled as partly:
            return await self._parts_failed(incoming, headers, partly.parts)
        except Exception as exc:
            if is_transient(exc):
                return await self._retry(incoming, headers, exc)
            return await self._failed(incoming, headers, exc)
        finally:
            _DELIVERY.reset(token)
        return await _act(incoming.ack(), "acked")

    def _parse(self, incoming: AbstractIncomingMessage) -> Message:
        model = self._models.get(incoming.type or "")
        if model is None:
            expected = " or ".join(repr(kind) for kind in self._models)
            raise InvalidMessage(f"type {incoming.type!r} where {expected} was expected")
        try:
            return model.model_validate_json(incoming.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            raise InvalidMessage(f"not a valid {model.__name__}: {problems}") from exc

    async def _retry(
        self, incoming: AbstractIncomingMessage, headers: HeadersType, exc: Exception
    ) -> MessageOutcome:
        if await self._retry_copy(incoming, headers, exc, None) is None:
            return "unsettled"
        return await _act(incoming.ack(), "retried")

    async def _failed(
        self, incoming: AbstractIncomingMessage, headers: HeadersType, exc: Exception
    ) -> MessageOutcome:
        if _count(headers.get(HEADER_FAILURES)) + 1 >= self._topology.max_deliveries:
            self._log_dead_letter(incoming, headers, exc, None)
            return await _act(incoming.reject(requeue=False), "dead_lettered")
        if await self._failure_copy(incoming, headers, exc, None) is None:
            return "unsettled"
        return await _act(incoming.ack(), "failed")

    async def _parts_failed(
        self,
        incoming: AbstractIncomingMessage,
        headers: HeadersType,
        parts: list[tuple[Exception, Message]],
    ) -> MessageOutcome:
        """Each failed part sent on as its error says, then the original acknowledged."""
        outcomes: list[MessageOutcome] = []
        for cause, rest in parts:
            if rest.message_type != incoming.type:  # a handler's bug: go on with the whole
                return await self._failed(
                    incoming,
                    headers,
                    TypeError(f"a part of {incoming.type} as {rest.message_type}"),
                )
            if is_transient(cause):
                outcome = await self._retry_copy(incoming, headers, cause, rest)
            else:
                outcome = await self._failure_copy(incoming, headers, cause, rest)
            if outcome is None:
                return "unsettled"  # parts sent so far are duplicates when it comes back
            outcomes.append(outcome)
        worst = next(o for o in _WORST_FIRST if o in outcomes)
        return await _act(incoming.ack(), worst)

    async def _retry_copy(
        self,
        incoming: AbstractIncomingMessage,
        headers: HeadersType,
        exc: Exception,
        rest: Message | None,
    ) -> MessageOutcome | None:
        """The message (or ``rest``) to its wait queue after an outage; None: not sent."""
        retries = _count(headers.get(HEADER_RETRIES))
        delay_ms = self._backoff.rung_ms(retries)
        wait_queue = self._topology.wait_queue(self._queue, delay_ms)
        counters = {HEADER_RETRIES: retries + 1}
        if not await self._republish(incoming, headers, wait_queue, counters, rest):
            return None
        log.warning(
            "message_retry_scheduled",
            queue=self._queue,
            retries=retries + 1,
            delay_ms=delay_ms,
            part=rest is not None,
            error=_described(exc),
        )
        return "retried"

    async def _failure_copy(
        self,
        incoming: AbstractIncomingMessage,
        headers: HeadersType,
        exc: Exception,
        rest: Message | None,
    ) -> MessageOutcome | None:
        """The message (or ``rest``) to its wait queue after a bug, its failure counted; a
        ``rest`` failed too often to the DLQ (a whole message is rejected there instead, see
        ``_failed``). None: not sent."""
        failures = _count(headers.get(HEADER_FAILURES)) + 1
        counters = {HEADER_FAILURES: failures}
        if failures >= self._topology.max_deliveries:
            self._log_dead_letter(incoming, headers, exc, rest)
            dlq = self._topology.dead_letter_queue(self._queue)
            if not await self._republish(incoming, headers, dlq, counters, rest):
                return None
            return "dead_lettered"
        log.error(
            "message_failed",
            queue=self._queue,
            failures=failures,
            part=rest is not None,
            exc_info=exc,
        )
        # Later rather than at once: a bug that depends on timing may not recur.
        wait_queue = self._topology.wait_queue(self._queue, self._backoff.rung_ms(failures - 1))
        if not await self._republish(incoming, headers, wait_queue, counters, rest):
            return None
        return "failed"

    def _log_dead_letter(
        self,
        incoming: AbstractIncomingMessage,
        headers: HeadersType,
        exc: Exception,
        rest: Message | None,
    ) -> None:
        # A part's copy keeps the original's message_id; its body is the part's.
        body = incoming.body if rest is None else rest.model_dump_json().encode()
        log.error(
            "message_dead_lettered",
            queue=self._queue,
            reason="handler failed on every delivery",
            failures=_count(headers.get(HEADER_FAILURES)) + 1,
            part=rest is not None,
            message_id=dead_letter_name(incoming.message_id, body),
            message_type=incoming.type,
            exc_info=exc,
        )

    async def _republish(
        self,
        incoming: AbstractIncomingMessage,
        headers: HeadersType,
        routing_key: str,
        counters: dict[str, int],
        rest: Message | None,
    ) -> bool:
        """Publish the copy (with ``rest`` as its body, if given) to ``routing_key``, however
        long the broker refuses it.

        False when it gave up without publishing: the delivery's channel is gone
        (the broker redelivers the original) or ``stop`` was set (the original
        goes back when the channel closes). Either way the original stays unsettled.
        """
        forwarded = forwarded_headers(headers) | counters
        body = None if rest is None else rest.model_dump_json().encode()
        attempt = 0
        while True:
            try:
                await self._publisher.republish(routing_key, incoming, headers=forwarded, body=body)
                return True
            except PublishError as exc:
                if not _channel_open(incoming):
                    log.warning(
                        "message_republish_abandoned", queue=self._queue, reason="channel closed"
                    )
                    return False
                pause_s = self._topology.retry.delay_s(attempt)
                attempt += 1
                log.warning(
                    "message_republish_failed",
                    queue=self._queue,
                    attempt=attempt,
                    retry_in_s=round(pause_s, 3),
                    error=str(exc),
                )
            if await stopped_within(self._stop, pause_s):
                log.warning("message_republish_abandoned", queue=self._queue, reason="stopping")
                return False


def forwarded_headers(headers: HeadersType) -> dict[str, Any]:
    """The headers a copy of a delivery carries on: ours, not the broker's bookkeeping.

    ``x-death`` and ``x-delivery-count`` describe the old copy; our counters carry on.
    """
    return {
        key: value
        for key, value in headers.items()
        if not key.startswith("x-") or key.startswith(HEADER_PREFIX)
    }


def current_delivery() -> AbstractIncomingMessage:
    """The delivery whose handler is running (for a handler that forwards it as it is)."""
    return _DELIVERY.get()


def first_handling() -> bool:
    """Whether the running handler is this message's first: not a delivery the broker
    redelivered (a consumer before this one held it, and may have acted on it before it
    crashed or lost its channel), nor a copy forwarded from one (``HEADER_REDELIVERED``: a
    sorter's crash between its republish and its ack leaves two copies), nor a copy this
    policy republished after a failure (our retry and failure counters, which copies
    forwarded to other queues keep), nor one an operator moved back from its dead-letter
    queue (whose counters start afresh). So of all the copies of one published message, at
    most one is handled as the first. False outside a consume() handler: nothing then says
    it is the first.
    """
    delivery = _DELIVERY.get(None)
    if delivery is None or delivery.redelivered:
        return False
    headers = delivery.headers or {}
    marks = {HEADER_RETRIES, HEADER_FAILURES, HEADER_REQUEUED, HEADER_REDELIVERED}
    return not marks & headers.keys()


async def _act(settle: Awaitable[None], outcome: MessageOutcome) -> MessageOutcome:
    """Ack/nack/reject; if the channel is gone the broker redelivers the message anyway."""
    try:
        await settle
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        log.warning("message_settle_failed", outcome=outcome, error=repr(exc))
        return "unsettled"
    return outcome


def _channel_open(incoming: AbstractIncomingMessage) -> bool:
    """Whether the delivery can still be settled: its own channel, not a reopened one, is open."""
    try:
        incoming.channel  # noqa: B018 (the property raises once that channel is closed)
    except ChannelInvalidStateError:
        return False
    return True


def _described(exc: BaseException) -> str:
    """``Type: message``, and the notes added on its way up (which check it was, ...)."""
    notes = "; ".join(getattr(exc, "__notes__", ()))
    return f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else "")


def _count(value: Any) -> int:
    """A non-negative counter header; anything unreadable counts as zero."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
