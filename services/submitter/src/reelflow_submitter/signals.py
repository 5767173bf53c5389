"""The submitter replicas' signals: lanes opened and Runware throttling, over one fanout.

Each replica has its own exclusive, auto-delete queue bound to the
``reelflow.submitter`` fanout, consumed without acknowledgements: a signal is a
hint whose loss costs only time (lanes are re-announced periodically, a 429 is
seen again at the next submit), so nothing here needs the work queues' policy.
"""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

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
    queue = await channel.declare_queue(
        topology.signal_queue(uuid.uuid4().hex), exclusive=True, auto_delete=True
    )
    await queue.bind(topology.submitter_signals)

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

    tag = await queue.consume(on_signal, no_ack=True)
    if listening is not None:
        listening.set()
    try:
        await stop.wait()
    finally:
        if not channel.is_closed:
            await queue.cancel(tag)
