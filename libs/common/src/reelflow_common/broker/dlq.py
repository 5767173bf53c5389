"""Dead-letter queues: how full they are, and moving their messages back to work.

Only three kinds of message reach a DLQ (see ``broker.consume``): one that
cannot be parsed, one a handler failed on ``max_deliveries`` times, and one
caught in a crash loop. Each worker reports the depth of its own queues' DLQs
as a gauge; an operator moves messages back once the cause is fixed
(``reelflow-admin dlq requeue``), or drops one that no fix will make valid
(``reelflow-admin dlq drop``). Every command that takes messages from a DLQ takes them
with ``taken_dead_letters``: one at a time, the ones it does not settle returned in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from reelflow_common.broker.connection import amqp_channel
from reelflow_common.broker.publisher import Publisher
from reelflow_common.logging import get_logger
from reelflow_common.metrics import DEAD_LETTERS, QUEUE_READY
from reelflow_common.topology import HEADER_REQUEUED, WORK_QUEUES, Topology

#: how often a worker reads the depth of its DLQs into the gauge
DEPTH_INTERVAL_S = 15.0
#: a depth read that takes longer than this is skipped (the broker is in trouble)
_READ_TIMEOUT_S = 10.0

log = get_logger(__name__)


def dead_letter_name(message_id: str | None, body: bytes) -> str:
    """What ``reelflow-admin dlq list`` names a dead letter (``dlq drop --id`` takes it): its
    AMQP ``message_id``, or for a message without one the start of its body's hash."""
    return message_id or f"sha256:{hashlib.sha256(body).hexdigest()[:16]}"


async def dead_letter_depths(
    channel: AbstractChannel, topology: Topology, work_queues: Sequence[str] = WORK_QUEUES
) -> dict[str, int]:
    """Messages ready in each work queue's DLQ, keyed by work queue (unprefixed name)."""
    depths: dict[str, int] = {}
    for work_queue in work_queues:
        depths[work_queue] = await ready_messages(channel, topology.dead_letter_queue(work_queue))
    return depths


async def ready_messages(channel: AbstractChannel, queue: str) -> int:
    """The messages ready in ``queue``, as the broker counts them now (a passive declare)."""
    # Straight to the broker: aio-pika answers a passive declare of a queue this
    # channel declared before from its own cache, with the count of that time.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    return declared.message_count or 0


async def report_dead_letter_depths(
    connection: AbstractRobustConnection, topology: Topology, work_queues: Sequence[str]
) -> dict[str, int]:
    """Read the DLQs of ``work_queues`` into the ``reelflow_dead_letters`` gauge.

    The work queues' own ready messages (the consumers' lag) go into
    ``reelflow_queue_ready_messages`` on the way.

    On a channel of its own: a queue that is missing closes the channel it was
    asked about, which must not be a consumer's.
    """
    if not connection.connected.is_set():
        return {}  # reconnecting: the gauge keeps its last value, readiness says the rest
    async with asyncio.timeout(_READ_TIMEOUT_S), amqp_channel(connection) as channel:
        depths = await dead_letter_depths(channel, topology, work_queues)
        for work_queue in work_queues:
            ready = await ready_messages(channel, topology.queue(work_queue))
            QUEUE_READY.labels(queue=work_queue).set(ready)
    for work_queue, depth in depths.items():
        DEAD_LETTERS.labels(queue=work_queue).set(depth)
    return depths


class TakenDeadLetters:
    """Messages taken from a DLQ one at a time and held unacknowledged until settled."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._held: list[AbstractIncomingMessage] = []

    async def next(self) -> AbstractIncomingMessage | None:
        """The DLQ's next message (None: empty). One not yet settled is never taken again."""
        # A command that settles each message before the next holds none of them here.
        while self._held and self._held[-1].processed:
            self._held.pop()
        message = await self._queue.get(no_ack=False, fail=False)
        if message is not None:
            self._held.append(message)
        return message

    async def return_unsettled(self) -> None:
        """Every message taken and not settled back to the DLQ, in the order taken."""
        held, self._held = self._held, []
        for message in held:
            if not message.processed:
                # If the channel is gone, the broker returns them anyway.
                with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
                    await message.nack(requeue=True)


@contextlib.asynccontextmanager
async def taken_dead_letters(
    channel: AbstractChannel, topology: Topology, work_queue: str
) -> AsyncIterator[TakenDeadLetters]:
    """Take messages from ``work_queue``'s DLQ; on leaving, the unsettled ones go back.

    They go back only then, not one by one: a message returned goes to the head of
    the queue, and the next ``get`` would take it again. Returned together, in the order
    taken, they keep their order. While held they are invisible to anyone else taking
    from the DLQ (a second operator's command); if this process dies, the broker returns
    them.
    """
    queue = await channel.get_queue(topology.dead_letter_queue(work_queue), ensure=False)
    taken = TakenDeadLetters(queue)
    try:
        yield taken
    finally:
        await taken.return_unsettled()


async def requeue_dead_letters(
    channel: AbstractChannel,
    topology: Topology,
    work_queue: str,
    *,
    limit: int,
    timeout_s: float = 10.0,
) -> int:
    """Move up to ``limit`` messages from ``work_queue``'s DLQ back to it; how many moved.

    ``channel`` must be in confirm mode (``amqp_channel``): each message is
    removed from the DLQ only once the broker has confirmed its copy on the work
    queue, so a failure part-way loses nothing (at worst one message is in both).
    The copy starts afresh: the broker's bookkeeping and our failure and retry
    counters are dropped; it carries how often it was moved back (``HEADER_REQUEUED``),
    so its handler knows an earlier handling may have acted on it. At most the messages
    present at the start are moved, so one that fails again at once is not moved twice.
    A refused copy (work queue full) is left in the DLQ and raises ``PublishError``.
    """
    if work_queue not in WORK_QUEUES:
        raise ValueError(f"not a work queue: {work_queue!r} (one of {', '.join(WORK_QUEUES)})")
    depth = (await dead_letter_depths(channel, topology, [work_queue]))[work_queue]
    publisher = Publisher(channel, topology, timeout_s=timeout_s)
    moved = 0
    try:
        async with taken_dead_letters(channel, topology, work_queue) as taken:
            while moved < min(limit, depth):
                message = await taken.next()
                if message is None:
                    break
                # A copy that fails goes back to the DLQ as the block is left, at once.
                await publisher.republish(
                    topology.queue(work_queue), message, headers=_requeued(message.headers)
                )
                await message.ack()
                moved += 1
    finally:
        log.info("dead_letters_requeued", queue=work_queue, moved=moved, limit=limit)
    return moved


def _requeued(headers: HeadersType) -> HeadersType:
    """The message's own headers, without any ``x-`` bookkeeping (the broker's or ours) but
    the count of its moves back, one more."""
    times = headers.get(HEADER_REQUEUED)
    fresh = {key: value for key, value in headers.items() if not key.startswith("x-")}
    return fresh | {HEADER_REQUEUED: (times if isinstance(times, int) else 0) + 1}
