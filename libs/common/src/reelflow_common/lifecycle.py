"""Process life: a stop event set by SIGTERM or SIGINT, and periodic background work."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from reelflow_common.logging import get_logger

log = get_logger(__name__)


def shutdown_event() -> asyncio.Event:
    """An event set on SIGTERM (Kubernetes, docker) or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def every(
    interval_s: float, work: Callable[[], Awaitable[object]], *, stop: asyncio.Event, name: str
) -> None:
    """Run ``work`` every ``interval_s`` until ``stop``; a failed run is logged, not fatal."""
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception("periodic_work_failed", work=name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            continue
