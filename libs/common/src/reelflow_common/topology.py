"""Every exchange, queue, routing key and header name, declared in one place.

Work queues are durable quorum queues; a message that is rejected, or delivered
too often (a crash loop), dead-letters into ``<queue>.dlq``. Delays are
fixed-TTL quorum queues (``<queue>.wait.<ms>ms``) that dead-letter back into
their work queue: one TTL per queue, so a long delay never holds a short one
behind it. Work and wait queues have a length limit past which the broker
refuses publishes (``reject-publish``): overload is an error the publisher sees,
never a message silently dropped. The WebSocket fan-out uses one exclusive, auto-delete queue per
notifier replica (``notifier.fanout.<uuid>``), bound to the event exchange for each project
its sockets watch: an event's routing key is its type and its project
(:func:`event_routing_key`), so a replica receives only the events it has watchers for.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustChannel
from aio_pika.exceptions import ChannelPreconditionFailed

from reelflow_common.backoff import Backoff
from reelflow_common.logging import get_logger
from reelflow_common.settings import TopologySettings

Arguments = dict[str, Any]

_REOPEN_TIMEOUT_S = 10.0

log = get_logger(__name__)

EVENTS_EXCHANGE = "reelflow.events"
#: fanout of signals between submitter replicas: lanes opened, Runware throttling
SUBMITTER_SIGNALS = "reelflow.submitter"

SUBMIT_CLIP = "submitter.submit_clip"
CHECK_CLIP = "poller.check_clip"
HINTED_CHECK = "poller.check_hinted"
#: copies of finished videos to reelflow's storage; the poller consumes it (it records successes)
STORE_VIDEO = "poller.store_video"
WORK_QUEUES = (SUBMIT_CLIP, CHECK_CLIP, HINTED_CHECK, STORE_VIDEO)

#: routing keys on the event exchange: ``<entity>.<past tense>``
CLIP_UPDATED = "clip.updated"
PROJECT_FINISHED = "project.finished"
CLIP_STORED = "clip.stored"
#: a task the clip does not stand for delivered a video, and Runware billed it
CLIP_ATTEMPT_SUCCEEDED = "clip.attempt_succeeded"
#: reelflow holds the video of such a task (an attempt's copy landed)
CLIP_ATTEMPT_STORED = "clip.attempt_stored"
#: what an api replica binds its wakeup queue with: every ``project.finished``, of a publisher
#: from before per-project routing keys (``project.finished``) too
PROJECT_FINISHED_BINDING = f"{PROJECT_FINISHED}.#"
#: the events of publishers from before per-project routing keys (two words: the type alone);
#: a notifier binds it, so a rolling upgrade loses no live event; nothing matches it after one
LEGACY_EVENT_BINDING = "*.*"


def event_routing_key(message_type: str, project_id: str) -> str:
    """An event's routing key on the event exchange: ``<type>.<project id>``
    (``clip.updated.<uuid>``); a notifier binds :func:`project_events_binding` for each
    project watched on it, so it receives no other project's events."""
    return f"{message_type}.{project_id}"


def project_events_binding(project_id: str) -> str:
    """The binding key of every event of one project (each event type is two words)."""
    return f"*.*.{project_id}"


#: per-tenant submit lanes: ``<prefix>submitter.submit_clip.lane.<tenant>``
SUBMIT_LANE = f"{SUBMIT_CLIP}.lane"
#: base name of each submitter replica's own signal queue
SUBMITTER_SIGNAL_QUEUE = "submitter.signals"
_LANE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

#: the lock on a prefix a development stack holds while it runs (``make run``): an exclusive
#: queue, which the broker gives one connection at a time and deletes with that connection
STACK_LOCK = "stack.lock"

#: base name of each notifier replica's own queue (``<prefix>notifier.fanout.<uuid>``)
NOTIFIER_FANOUT = "notifier.fanout"
#: base name of each api replica's own queue of ``project.finished`` events, which wake
#: the replica's ``?wait=`` requests (``<prefix>api.wakeups.<uuid>``)
API_WAKEUPS = "api.wakeups"
#: base name of each api replica's own queue of the submitters' signals, from which it
#: learns the tenant lanes a submitter consumes (``<prefix>api.lanes.<uuid>``)
API_LANES = "api.lanes"

#: AMQP headers. The correlation id names the HTTP request that started a chain, under one
#: name everywhere: this header, the messages' ``correlation_id`` field, the log key, and
#: the HTTP header ``X-Correlation-ID`` (``HTTP_CORRELATION_ID``).
HEADER_PROJECT_ID = "project_id"
HEADER_TENANT_ID = "tenant_id"
HEADER_TASK_UUID = "task_uuid"
HEADER_CORRELATION_ID = "correlation_id"
#: the HTTP request and response header of the correlation id
HTTP_CORRELATION_ID = "X-Correlation-ID"
#: W3C trace context, written and read by ``reelflow_common.tracing`` (OpenTelemetry's names)
TRACE_HEADERS = ("traceparent", "tracestate")
#: our own headers start with this; other ``x-`` headers are the broker's bookkeeping
HEADER_PREFIX = "x-reelflow-"
HEADER_RETRIES = f"{HEADER_PREFIX}retries"
#: how many times a handler failed on this message with a bug (not an outage)
HEADER_FAILURES = f"{HEADER_PREFIX}failures"
#: how many times an operator moved this message back from its dead-letter queue: it was
#: handled before, so its next handling is never its first (``consume.first_handling``)
HEADER_REQUEUED = f"{HEADER_PREFIX}requeued"
#: set by the submitter's sorter on the copy of a delivery the broker redelivered to it: a
#: sorter before it may have put a copy in the lane already, so this one's handling is never
#: its first (``consume.first_handling``)
HEADER_REDELIVERED = f"{HEADER_PREFIX}redelivered"


#: The broker's own count of deliveries (``x-delivery-limit``), a backstop for crash loops
#: only: a message that kills its consumer outright is never settled, so nothing but the
#: broker can count it. Every lost connection or channel also counts one delivery for each
#: message in flight on it (and a message waiting out a broker problem in-process stays in
#: flight), so the limit is far above any plausible run of reconnects; handler bugs are
#: counted by ``consume()`` in ``HEADER_FAILURES`` and reach the DLQ after
#: ``max_deliveries``. At one restart every few minutes (Kubernetes' crash-loop backoff),
#: a crash loop still ends in the DLQ within hours instead of blocking a queue for good.
BACKSTOP_DELIVERY_LIMIT = 100


#: a retry's delay is drawn from the upper half of its rung's: clips that failed together
#: (a 429 storm) do not all come back at the same moment
RETRY_JITTER = 0.5


def retry_backoff(settings: TopologySettings) -> Backoff:
    """The retry ladder (``SubmitClip``, ``CheckHintedTasks``, a refused republish):
    doubling from ``retry_initial_delay_s`` to ``retry_max_delay_s``, jittered."""
    return Backoff(
        first_s=settings.retry_initial_delay_s,
        cap_s=settings.retry_max_delay_s,
        jitter=RETRY_JITTER,
    )


def poll_ladder(settings: TopologySettings) -> Backoff:
    """The checks' ladder (``CheckClip``'s wait queues, the fixed poll plan): from
    ``poll_initial_delay_s``, ``poll_backoff`` times longer, to ``poll_max_delay_s``."""
    return Backoff(
        first_s=settings.poll_initial_delay_s,
        cap_s=settings.poll_max_delay_s,
        factor=settings.poll_backoff,
    )


@dataclass(frozen=True, kw_only=True)
class Topology:
    """Names with the deployment's prefix, each work queue's backoff, and the queue limits.

    Built from settings (:meth:`from_settings`, or :meth:`named` for a prefix alone): its
    fields restate no setting's default.
    """

    prefix: str
    #: each work queue's delays; one wait queue per rung of its ladder
    backoffs: dict[str, Backoff]
    #: how long ``consume()`` waits, in-process, before publishing a retry the broker refused
    retry: Backoff
    max_deliveries: int
    work_queue_max_length: int
    wait_queue_max_length: int
    #: x-expires of a tenant's submit lane (0: never)
    lane_expires_ms: int
    delivery_limit: int = BACKSTOP_DELIVERY_LIMIT

    @classmethod
    def named(cls, prefix: str) -> Topology:
        """The topology on ``prefix`` of the settings as the environment gives them (their
        defaults, unless ``REELFLOW_*`` says otherwise): for tools and tests that need the
        names of a prefix's exchanges and queues, as a service there would declare them."""
        return cls.from_settings(TopologySettings(amqp_prefix=prefix))

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> Topology:
        retry = retry_backoff(settings)
        poll = poll_ladder(settings)
        copy = Backoff(first_s=settings.copy_initial_delay_s, cap_s=settings.copy_max_delay_s)
        return cls(
            prefix=settings.amqp_prefix,
            backoffs={SUBMIT_CLIP: retry, CHECK_CLIP: poll, HINTED_CHECK: retry, STORE_VIDEO: copy},
            retry=retry,
            max_deliveries=settings.max_deliveries,
            work_queue_max_length=settings.work_queue_max_length,
            wait_queue_max_length=settings.wait_queue_max_length,
            lane_expires_ms=round(settings.lane_expires_s * 1000),
        )

    @property
    def ladders(self) -> dict[str, tuple[int, ...]]:
        """Each work queue's wait-queue TTLs in milliseconds (its backoff's rungs)."""
        return {work_queue: backoff.rungs_ms() for work_queue, backoff in self.backoffs.items()}

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def events_exchange(self) -> str:
        return self.name(EVENTS_EXCHANGE)

    def queue(self, work_queue: str) -> str:
        return self.name(work_queue)

    def dead_letter_queue(self, work_queue: str) -> str:
        return self.name(f"{work_queue}.dlq")

    def wait_queue(self, work_queue: str, delay_ms: int) -> str:
        return self.name(f"{work_queue}.wait.{delay_ms}ms")

    @property
    def submitter_signals(self) -> str:
        return self.name(SUBMITTER_SIGNALS)

    @property
    def stack_lock(self) -> str:
        """The lock a development stack on this prefix holds (``reelflow_common.broker.stacks``)."""
        return self.name(STACK_LOCK)

    def lane_queue(self, tenant_id: str) -> str:
        """A tenant's submit lane (a quorum queue of its own, declared when first needed)."""
        if not _LANE_NAME.fullmatch(tenant_id):
            tenant_id = hashlib.sha256(tenant_id.encode()).hexdigest()[:32]
        return self.name(f"{SUBMIT_LANE}.{tenant_id}")

    def signal_queue(self, replica_id: str) -> str:
        """A submitter replica's own signal queue (exclusive, auto-delete)."""
        return self.name(f"{SUBMITTER_SIGNAL_QUEUE}.{replica_id}")

    def fanout_queue(self, replica_id: str) -> str:
        """A notifier replica's own event queue (exclusive, auto-delete, classic)."""
        return self.name(f"{NOTIFIER_FANOUT}.{replica_id}")

    def fanout_overflow_queue(self, replica_id: str) -> str:
        """Where a replica's fan-out queue drops the events it has no room for (a signal)."""
        return self.name(f"{NOTIFIER_FANOUT}.{replica_id}.overflow")

    def wakeups_queue(self, replica_id: str) -> str:
        """An api replica's own queue of ``project.finished`` events (exclusive, auto-delete)."""
        return self.name(f"{API_WAKEUPS}.{replica_id}")

    def api_lanes_queue(self, replica_id: str) -> str:
        """An api replica's own queue of submitter signals (exclusive, auto-delete)."""
        return self.name(f"{API_LANES}.{replica_id}")

    def queue_names(self) -> list[str]:
        """Every durable queue this topology declares (not the notifiers' own queues)."""
        names: list[str] = []
        for work_queue in WORK_QUEUES:
            names += [self.queue(work_queue), self.dead_letter_queue(work_queue)]
            names += [self.wait_queue(work_queue, ms) for ms in self.ladders.get(work_queue, ())]
        return names

    def exchange_names(self) -> list[str]:
        """Every exchange this topology declares."""
        return [self.events_exchange, self.submitter_signals]

    def wait_queue_for(self, work_queue: str, delay_s: float) -> str:
        """The wait queue whose TTL best matches ``delay_s`` (``Backoff.nearest_rung_ms``)."""
        return self.wait_queue(work_queue, self.backoffs[work_queue].nearest_rung_ms(delay_s))


async def declare_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange and queue. Idempotent; every service calls it at start."""
    await channel.declare_exchange(
        topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        topology.submitter_signals, aio_pika.ExchangeType.FANOUT, durable=True
    )
    for work_queue in WORK_QUEUES:
        await _declare_queue(
            channel, topology.dead_letter_queue(work_queue), {"x-queue-type": "quorum"}
        )
        await _declare_queue(
            channel, topology.queue(work_queue), _work_queue_arguments(topology, work_queue)
        )
        for delay_ms in topology.ladders.get(work_queue, ()):
            await _declare_queue(
                channel,
                topology.wait_queue(work_queue, delay_ms),
                {
                    "x-queue-type": "quorum",
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.queue(work_queue),
                    # Expired messages move on only once the work queue confirms them.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                    "x-max-length": topology.wait_queue_max_length,
                },
            )


def _work_queue_arguments(topology: Topology, work_queue: str) -> Arguments:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": topology.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": topology.dead_letter_queue(work_queue),
        # A message rejected to the DLQ leaves only once the DLQ confirms it.
        "x-dead-letter-strategy": "at-least-once",
        # Full: the broker refuses publishes (a PublishError, a 503 at the API)
        # rather than dropping the oldest message.
        "x-overflow": "reject-publish",
        "x-max-length": topology.work_queue_max_length,
    }


async def declare_lane(channel: AbstractChannel, topology: Topology, tenant_id: str) -> str:
    """Declare a tenant's submit lane (idempotent) and return its name.

    A work queue like ``submitter.submit_clip`` (its DLQ, its limits), which RabbitMQ
    deletes once no submitter has used it for ``lane_expires_ms``.
    """
    name = topology.lane_queue(tenant_id)
    arguments = _work_queue_arguments(topology, SUBMIT_CLIP)
    if topology.lane_expires_ms:
        arguments["x-expires"] = topology.lane_expires_ms
    await _declare_queue(channel, name, arguments)
    return name


async def _declare_queue(channel: AbstractChannel, name: str, arguments: Arguments) -> None:
    """Declare ``name`` durable with ``arguments``; an existing queue made otherwise is used as is.

    A queue's arguments are fixed when it is created, and RabbitMQ refuses a
    declare that differs (406, which also closes the channel). A release that
    changes them (a length limit, the delivery limit) finds its queues as an
    earlier one made them: refusing to start would stop every replica of a
    rolling update, so the service runs on the queue as it is and says so at
    error level. An operator recreates the queue once it is drained (stop its
    consumers, wait for it to empty, delete it; the next start declares it anew).
    """
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
        return
    except ChannelPreconditionFailed as exc:
        log.error("queue_arguments_outdated", queue=name, wanted=arguments, error=str(exc))
    await _reopened(channel)
    await channel.declare_queue(name, passive=True)


async def _reopened(channel: AbstractChannel) -> None:
    """Until a channel the broker closed is open again (a robust one reopens by itself)."""
    async with asyncio.timeout(_REOPEN_TIMEOUT_S):
        if not isinstance(channel, AbstractRobustChannel):
            await channel.reopen()
            return
        reopened = asyncio.Event()

        def on_reopen(_channel: AbstractRobustChannel | None, /) -> None:
            reopened.set()

        channel.reopen_callbacks.add(on_reopen)
        try:
            if channel.is_closed:
                await reopened.wait()
        finally:
            channel.reopen_callbacks.discard(on_reopen)
        await channel.ready()
