"""The submitter replicas' signals: lanes opened and Runware throttling, over one fanout.

Each replica has its own queue bound to the ``reelflow.submitter`` fanout
(``reelflow_common.broker.replica``: exclusive, auto-delete, classic, bounded),
consumed without acknowledgements: a signal is a hint whose loss costs only time
(lanes are re-announced periodically, a 429 is seen again at the next submit), so
nothing here needs the work queues' policy.
"""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

from reelflow_common.broker.replica import HINT_QUEUE_MAX_LENGTH, consuming_replica_queue
from reelflow_common.logging import get_logger
from reelflow_common.messages import SIGNAL_TYPES, LaneOpened
from reelflow_common.topology import Topology
from reelflow_submitter.lanes import Lanes
from reelflow_submitter.throttle import RunwareThrottle

log = get_logger(__name__)


async def listen(
    channel: AbstractChannel,
    topology: Topology,
    *,
    lanes: Lanes,
    throttle: RunwareThrottle,
    stop: asyncio.Event,
    listening: asyncio.Event | None = None,
) -> None:
    """Apply every signal until ``stop``; ``listening`` is set once signals arrive."""

    async def on_signal(incoming: AbstractIncomingMessage) -> None:
        model = SIGNAL_TYPES.get(incoming.type or "")
        if model is None:
            log.warning("signal_ignored", type=incoming.type)
            return
        try:
            signal = model.model_validate_json(incoming.body)
        except ValidationError as exc:
            log.warning("signal_invalid", type=incoming.type, error=str(exc))
            return
        if isinstance(signal, LaneOpened):
            try:
                await lanes.open(signal.tenant_id, announce=False)
            except Exception:
                log.exception("lane_not_opened", tenant_id=signal.tenant_id)
        else:
            throttle.told(signal.until)

    async with consuming_replica_queue(
        channel,
        topology.signal_queue(uuid.uuid4().hex),
        on_signal,
        exchange=topology.submitter_signals,
        binding_keys=[""],
        max_length=HINT_QUEUE_MAX_LENGTH,
    ):
        if listening is not None:
            listening.set()
        await stop.wait()
