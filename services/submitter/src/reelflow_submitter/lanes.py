"""Fair share between tenants: one submit lane per tenant, each served in turn.

The reconciler, retries and the API (for a tenant whose lane it has not heard
of) put ``SubmitClip`` on the shared ``submitter.submit_clip`` queue, in the
order they come. A tenant that sends 10,000 clips would put them all ahead of a
tenant that sends 5. So the submitter first **sorts**: it moves each message, as
it is (body and headers), to its tenant's own lane,
``submitter.submit_clip.lane.<tenant>`` (a quorum queue with the same
dead-letter queue and limits), publishing the copy before acknowledging the
original: a crash in between makes a duplicate, which the clip's guarded writes
absorb, never a loss. The copy of a delivery the broker redelivered to the sorter is
marked (``HEADER_REDELIVERED``), so only the first copy of a clip's first submit is
handled as its first (``consume.first_handling``), the one that may skip the read
before Runware (``reelflow_submitter.service.reads_before_submit``). Sorting costs no
Runware call and no database operation, so the shared queue drains at broker speed.

Then every replica consumes **every lane** with a prefetch of
``tenant_submit_concurrency``: a tenant has at most that many submits in
flight per replica however long its backlog, and a tenant with 5 clips gets its
own slots at once. Above the lanes a FIFO semaphore bounds the replica's
submits (``submit_concurrency``); since each lane can only have its prefetch
waiting there, the lanes take turns (round-robin) when the replica is full.

Replicas learn lanes three ways: the tenants in MongoDB at start (one read),
a ``LaneOpened`` signal on the submitter fanout whenever a sorter opens a lane,
and every replica re-announcing its lanes every ``lane_announce_interval_s``
(broker only). A lane holds what a sorter put there, and that sorter's replica
consumes it at once; and what the API put there itself (``reelflow_api.lanes``),
which it does only while some replica announces the lane. So no lane is left
without a consumer for long while a submitter runs: a lane whose consumer failed is
no longer announced, and within the API's ``lane_ttl_s`` the tenant's new clips come
through the sorter again, which opens it anew. The clips the API put on that lane
before then wait there until it is consumed again (that reopening, or a replica
starting), at worst until their leases run out and the reconciler re-dispatches them
(``lease_s + reconcile_grace_s + reconcile_interval_s`` after they were queued).
Retries of a lane's messages go through the shared queue's wait ladder, back to the
shared queue, and are sorted again.

The sorter empties the shared queue at broker speed, so a backlog of submits sits in the
lanes: every replica reads how many messages are ready in each lane it consumes
(:meth:`Lanes.report_depths`, every :data:`LANE_DEPTH_INTERVAL_S`) into
``reelflow_queue_ready_messages{queue="submitter.submit_clip.lanes"}`` (their sum, what the
lag alerts watch) and ``reelflow_lane_ready_messages_max`` (the fullest lane).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from reelflow_common.broker import Publisher, amqp_channel, consume
from reelflow_common.broker.consume import current_delivery, forwarded_headers
from reelflow_common.broker.dlq import ready_messages
from reelflow_common.broker.publisher import Unroutable
from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.messages import LaneOpened, SubmitClip
from reelflow_common.metrics import QUEUE_READY
from reelflow_common.topology import HEADER_REDELIVERED, SUBMIT_CLIP, Topology, declare_lane
from reelflow_submitter.metrics import LANE_READY_MAX, LANES, SUBMIT_LANES

log = get_logger(__name__)

#: how often a replica reads its lanes' depths: one passive declare per lane, one at a time
#: on a channel of their own. A lane per tenant makes hundreds or thousands of them, not the
#: work queues' four: 30 s keeps that to a few dozen cheap broker requests a second per
#: replica, and the lag alerts it feeds hold for 10 minutes or more.
LANE_DEPTH_INTERVAL_S = 30.0
#: a lane's depth read that takes longer than this ends the pass (the broker is in trouble)
_READ_TIMEOUT_S = 10.0

Handler = Callable[[SubmitClip], Awaitable[None]]


class FairGate:
    """At most ``concurrency`` submits at once; waiting ones go in arrival order (FIFO)."""

    def __init__(self, handler: Handler, concurrency: int) -> None:
        self._handler = handler
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, message: SubmitClip) -> None:
        async with self._slots:
            await self._handler(message)


class Lanes:
    """The tenant lanes this replica consumes: opened on demand, each a consume() loop."""

    def __init__(
        self,
        *,
        declare_channel: AbstractChannel,
        consume_channel: AbstractChannel,
        topology: Topology,
        publisher: Publisher,
        handler: Handler,
        tenant_concurrency: int,
        stop: asyncio.Event,
        drain_timeout_s: float,
    ) -> None:
        self._declare_channel = declare_channel
        self._consume_channel = consume_channel
        self._topology = topology
        self._publisher = publisher
        self._handler = handler
        self._tenant_concurrency = tenant_concurrency
        self._stop = stop
        self._drain_timeout_s = drain_timeout_s
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._opening = asyncio.Lock()

    @property
    def tenants(self) -> list[str]:
        return list(self._consumers)

    async def open(self, tenant_id: str, *, announce: bool = True) -> str:
        """The tenant's lane, declared and consumed here (once); tell the other replicas."""
        name = self._topology.lane_queue(tenant_id)
        if tenant_id in self._consumers or self._stop.is_set():
            return name
        async with self._opening:
            if tenant_id in self._consumers:
                return name
            await declare_lane(self._declare_channel, self._topology, tenant_id)
            task = asyncio.create_task(self._consume(tenant_id, name), name=f"lane:{name}")
            self._consumers[tenant_id] = task
            SUBMIT_LANES.set(len(self._consumers))
        log.info("lane_opened", tenant_id=tenant_id, lane=name)
        if announce:
            await self._signal(tenant_id)
        return name

    async def reopen(self, tenant_id: str) -> str:
        """The lane is gone under its consumer (deleted, or expired): declare and consume anew."""
        consumer = self._consumers.pop(tenant_id, None)
        if consumer is not None:
            consumer.cancel()
        return await self.open(tenant_id)

    async def announce_all(self) -> None:
        """Tell every replica about every lane here (a replica that missed a signal learns)."""
        for tenant_id in self.tenants:
            await self._signal(tenant_id)

    async def report_depths(self, connection: AbstractRobustConnection) -> list[int]:
        """Read the ready messages of every lane consumed here into the gauges: their sum as
        ``reelflow_queue_ready_messages{queue="submitter.submit_clip.lanes"}``, the largest as
        ``reelflow_lane_ready_messages_max``. The depths read (a lane gone meanwhile: none).

        Reconnecting, or a read that times out: the gauges keep their last values.
        """
        if not connection.connected.is_set():
            return []
        names = [self._topology.lane_queue(tenant_id) for tenant_id in self.tenants]
        depths = await lane_depths(connection, names)
        QUEUE_READY.labels(queue=LANES).set(sum(depths))
        LANE_READY_MAX.set(max(depths, default=0))
        return depths

    async def run(self) -> None:
        """Until ``stop``; then every lane's consumer drains."""
        await self._stop.wait()
        consumers = list(self._consumers.values())
        if consumers:
            await asyncio.gather(*consumers, return_exceptions=True)

    async def _consume(self, tenant_id: str, name: str) -> None:
        try:
            await consume(
                self._consume_channel,
                self._topology,
                SUBMIT_CLIP,
                SubmitClip,
                self._handler,
                publisher=self._publisher,
                concurrency=self._tenant_concurrency,
                stop=self._stop,
                drain_timeout_s=self._drain_timeout_s,
                source=name,
            )
        except Exception:
            # Forget it: the next message or signal for this tenant opens it again.
            log.exception("lane_consumer_failed", tenant_id=tenant_id, lane=name)
            self._consumers.pop(tenant_id, None)
            SUBMIT_LANES.set(len(self._consumers))

    async def _signal(self, tenant_id: str) -> None:
        try:
            await self._publisher.signal(LaneOpened(tenant_id=tenant_id))
        except TransientError as exc:
            # Best effort: the periodic announcement says it again.
            log.warning("lane_signal_failed", tenant_id=tenant_id, error=str(exc))


async def lane_depths(connection: AbstractRobustConnection, names: list[str]) -> list[int]:
    """The ready messages of each lane of ``names`` that exists, one passive declare each.

    On a channel of their own, one at a time: a lane that is gone (deleted, expired) closes
    the channel it was asked about, which must not be a consumer's; the rest go on a new one.
    """
    depths: list[int] = []
    left = list(names)
    while left:
        async with amqp_channel(connection) as channel:
            while left:
                name = left.pop(0)
                try:
                    async with asyncio.timeout(_READ_TIMEOUT_S):
                        depths.append(await ready_messages(channel, name))
                except ChannelNotFoundEntity:
                    break  # that channel is closed now
    return depths


class LaneSorter:
    """``SubmitClip`` on the shared queue → its tenant's lane, body and headers as they are."""

    def __init__(self, lanes: Lanes, publisher: Publisher) -> None:
        self._lanes = lanes
        self._publisher = publisher

    async def __call__(self, message: SubmitClip) -> None:
        lane = await self._lanes.open(message.tenant_id)
        delivery = current_delivery()
        # Our retry and failure counters go along: a poison message still reaches its DLQ.
        headers = forwarded_headers(delivery.headers or {})
        if delivery.redelivered:
            # A sorter before this one may have put a copy in the lane and died before its
            # ack: this copy is never handled as the first (``consume.first_handling``).
            headers[HEADER_REDELIVERED] = True
        try:
            await self._publisher.republish(lane, delivery, headers=headers)
        except Unroutable:
            # Unroutable if the lane was deleted under us: make it again, and let the
            # policy retry this message (it is still unacknowledged on the shared queue).
            await self._lanes.reopen(message.tenant_id)
            raise
