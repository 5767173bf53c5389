"""Every exchange, queue, routing key and header name, declared in one place.

Work queues are durable quorum queues with a delivery limit; a message that is
rejected, or delivered too often, dead-letters into ``<queue>.dlq``. Delays are
fixed-TTL quorum queues (``<queue>.wait.<ms>ms``) that dead-letter back into
their work queue: one TTL per queue, so a long delay never holds a short one
behind it. The WebSocket fan-out uses one exclusive, auto-delete queue per
notifier replica (``notifier.fanout.<uuid>``), bound to the event exchange.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel

from reelflow_common.settings import TopologySettings

EVENTS_EXCHANGE = "reelflow.events"

SUBMIT_CLIP = "submitter.submit_clip"
CHECK_CLIP = "poller.check_clip"
HINTED_CHECK = "poller.check_hinted"
WORK_QUEUES = (SUBMIT_CLIP, CHECK_CLIP, HINTED_CHECK)

#: routing keys on the event exchange: ``<entity>.<past tense>``
CLIP_UPDATED = "clip.updated"
PROJECT_FINISHED = "project.finished"
EVENT_BINDING_KEYS = ("clip.*", "project.*")

#: base name of each notifier replica's own queue (``<prefix>notifier.fanout.<uuid>``)
NOTIFIER_FANOUT = "notifier.fanout"

#: AMQP headers
HEADER_PROJECT_ID = "project_id"
HEADER_TASK_UUID = "task_uuid"
HEADER_REQUEST_ID = "request_id"
HEADER_RETRIES = "x-reelflow-retries"


def delay_ladder(first_s: float, factor: float, cap_s: float) -> tuple[int, ...]:
    """Delays in whole milliseconds: ``first``, ``first*factor``, … up to and including ``cap``."""
    rungs: list[int] = []
    delay = first_s
    while True:
        ms = max(1, round(min(delay, cap_s) * 1000))
        if not rungs or ms > rungs[-1]:
            rungs.append(ms)
        if delay >= cap_s or factor <= 1.0:
            break
        delay *= factor
    if rungs[-1] < round(cap_s * 1000):
        rungs.append(round(cap_s * 1000))
    return tuple(rungs)


def pick_rung(rungs: Sequence[int], delay_s: float) -> int:
    """The rung nearest to ``delay_s`` on a log scale (the shortest one for tiny delays).

    Nearest rather than "not above", so that a jittered delay between two rungs
    lands on either, and the jitter survives the ladder's granularity.
    """
    wanted = max(delay_s * 1000, 1e-9)
    return min(rungs, key=lambda ms: abs(math.log(ms / wanted)))


@dataclass(frozen=True)
class Topology:
    """Names with the deployment's prefix, and the delay ladder of each work queue."""

    prefix: str
    ladders: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_deliveries: int = 5

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> Topology:
        retry = delay_ladder(settings.retry_initial_delay_s, 2.0, settings.retry_max_delay_s)
        poll = delay_ladder(
            settings.poll_initial_delay_s, settings.poll_backoff, settings.poll_max_delay_s
        )
        return cls(
            prefix=settings.amqp_prefix,
            ladders={SUBMIT_CLIP: retry, CHECK_CLIP: poll, HINTED_CHECK: retry},
            max_deliveries=settings.max_deliveries,
        )

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

    def fanout_queue(self, replica_id: str) -> str:
        """A notifier replica's own event queue (exclusive, auto-delete, classic)."""
        return self.name(f"{NOTIFIER_FANOUT}.{replica_id}")

    def queue_names(self) -> list[str]:
        """Every durable queue this topology declares (not the notifiers' own queues)."""
        names: list[str] = []
        for work_queue in WORK_QUEUES:
            names += [self.queue(work_queue), self.dead_letter_queue(work_queue)]
            names += [self.wait_queue(work_queue, ms) for ms in self.ladders.get(work_queue, ())]
        return names

    def wait_queue_for(self, work_queue: str, delay_s: float) -> str:
        """The wait queue whose TTL best matches ``delay_s`` (see :func:`pick_rung`)."""
        return self.wait_queue(work_queue, pick_rung(self.ladders[work_queue], delay_s))


async def declare_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange and queue. Idempotent; every service calls it at start."""
    await channel.declare_exchange(
        topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    for work_queue in WORK_QUEUES:
        await channel.declare_queue(
            topology.dead_letter_queue(work_queue),
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        await channel.declare_queue(
            topology.queue(work_queue),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": topology.max_deliveries,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topology.dead_letter_queue(work_queue),
            },
        )
        for delay_ms in topology.ladders.get(work_queue, ()):
            await channel.declare_queue(
                topology.wait_queue(work_queue, delay_ms),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.queue(work_queue),
                    # Expired messages move on only once the work queue confirms them.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
