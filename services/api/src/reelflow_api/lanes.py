"""Fair share without the sorting hop: a project's ``SubmitClip``s straight to its tenant's lane.

The submitter sorts each ``SubmitClip`` of the shared ``submitter.submit_clip``
queue into its tenant's lane (``reelflow_submitter.lanes``): one more confirmed
publish, delivery and acknowledgement per clip, each a Raft command of a quorum
queue. The API saves that hop where it can: it publishes a tenant's new clips to
the tenant's lane itself, the same message the sorter would have put there (the
sorter forwards body and headers as they are, and a first delivery carries no
header of the broker's), and to the shared queue otherwise.

It trusts a lane only while a submitter says it consumes it. Each api replica
has its own queue on the submitters' signal fanout (``<prefix>api.lanes.<uuid>``)
and remembers every ``LaneOpened`` it hears for ``lane_ttl_s``: a sorter sends
one when it opens a lane, and every submitter replica re-announces the lanes it
consumes every ``lane_announce_interval_s``. So a lane no submitter consumes any
more (its consumer failed, every submitter gone for good) is forgotten within
``lane_ttl_s``, and the tenant's later clips go back through the sorter, which opens
it again. The clips already put on that lane before it was forgotten are not moved:
they wait there until a submitter consumes the lane again (a sorter reopening it, a
submitter starting), at worst until their leases run out and the reconciler sends
them again (``lease_s + reconcile_grace_s + reconcile_interval_s`` after they were
queued; the copy left on the lane is absorbed by the task UUID and guarded writes).
A lane deleted meanwhile (``x-expires``, an operator) makes the publish
``Unroutable``: those clips go to the shared queue at once and the lane is
forgotten. A fallback costs a publish, never a clip.

What does not change: the first clip of a tenant goes through the sorter (which
declares the lane and announces it), as do retries (the wait ladder leads back
to the shared queue) and the reconciler's re-dispatches (rare; no signals there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

from reelflow_common.broker import Publisher
from reelflow_common.broker.publisher import Unroutable
from reelflow_common.broker.replica import HINT_QUEUE_MAX_LENGTH, consuming_replica_queue
from reelflow_common.commands import send_all, send_each
from reelflow_common.logging import get_logger
from reelflow_common.messages import LaneOpened, Message, SubmitClip
from reelflow_common.topology import SUBMIT_CLIP, Topology

log = get_logger(__name__)

#: tenants remembered at most; past it a new one's clips keep going through the sorter
MAX_LANES = 100_000


class KnownLanes:
    """The tenants whose lane a submitter said it consumes, each for ``ttl_s`` after it said so."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = MAX_LANES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._until: dict[str, float] = {}

    def announced(self, tenant_id: str) -> None:
        """A submitter consumes the tenant's lane (``LaneOpened``)."""
        now = self._clock()
        if tenant_id not in self._until and len(self._until) >= self._max_entries:
            self._until = {t: until for t, until in self._until.items() if until > now}
            if len(self._until) >= self._max_entries:
                return
        self._until[tenant_id] = now + self._ttl_s

    def consumed(self, tenant_id: str) -> bool:
        """Whether a submitter said, less than ``ttl_s`` ago, that it consumes the tenant's lane."""
        until = self._until.get(tenant_id)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[tenant_id]
            return False
        return True

    def forget(self, tenant_id: str) -> None:
        """The lane is gone: the tenant's clips go through the sorter until it is announced anew."""
        self._until.pop(tenant_id, None)


async def send_submits(
    publisher: Publisher, lanes: KnownLanes, submits: Sequence[SubmitClip]
) -> list[Message]:
    """Publish ``submits``, each to its tenant's lane if consumed, else to the shared queue.

    All confirms awaited together; the ones not confirmed (an outage). A message its
    lane cannot take because the lane is gone goes to the shared queue instead.
    """
    shared: list[Message] = []
    failed: list[Message] = []
    by_tenant: dict[str, list[Message]] = {}
    for submit in submits:
        if lanes.consumed(submit.tenant_id):
            by_tenant.setdefault(submit.tenant_id, []).append(submit)
        else:
            shared.append(submit)
    for tenant_id, messages in by_tenant.items():
        lane = publisher.topology.lane_queue(tenant_id)
        gone: list[Message] = []
        for message, error in await send_each(publisher, SUBMIT_CLIP, messages, to=lane):
            (gone if isinstance(error, Unroutable) else failed).append(message)
        if gone:
            lanes.forget(tenant_id)
            log.info("lane_gone", tenant_id=tenant_id, lane=lane, clips=len(gone))
            shared += gone
    if shared:
        failed += await send_all(publisher, SUBMIT_CLIP, shared)
    return failed


@asynccontextmanager
async def listening(
    channel: AbstractChannel, topology: Topology, lanes: KnownLanes, *, queue_name: str
) -> AsyncIterator[str]:
    """Feed the submitters' ``LaneOpened`` signals to ``lanes`` until exit; yields the queue's name.

    ``queue_name`` is picked once by the caller (``topology.api_lanes_queue``), as for
    ``wakeups.subscribed``. Other signals (Runware throttling) are not the API's business.
    """

    async def on_signal(incoming: AbstractIncomingMessage) -> None:
        if incoming.type != LaneOpened.message_type:
            return
        try:
            signal = LaneOpened.model_validate_json(incoming.body)
        except ValidationError as exc:
            log.warning("lane_signal_invalid", errors=exc.error_count())
            return
        lanes.announced(signal.tenant_id)

    async with consuming_replica_queue(
        channel,
        queue_name,
        on_signal,
        exchange=topology.submitter_signals,
        binding_keys=[""],
        max_length=HINT_QUEUE_MAX_LENGTH,  # a lane dropped is heard of later
    ) as name:
        yield name
