"""Keep open sockets' objects out of the cyclic collector's passes, and still free closed ones.

A socket holds some 200 tracked objects (uvicorn's protocol, the ASGI
coroutines, the session's tasks) for as long as it is open; at 10,000 sockets
every full pass scans 2 million objects and stalls every socket meanwhile
(1-13 s on the loaded benchmark machine), and the passes of the middle
generation scan each burst of new sockets again and again.

So, once connections stop arriving (a tick finds sockets opened since the
last one), the young generations are collected and everything alive is
frozen (``gc.freeze()``): moved to the permanent generation, which no pass
scans. Objects that are frozen are still freed by reference counting when
nothing refers to them; what freezing keeps is *cyclic* garbage: the cycles a
socket leaves when it closes (a finished task and its coroutine, an
exception and its traceback). Those are reclaimed by one full pass over
everything (``gc.unfreeze()``, ``gc.collect()``, freeze again) once the
sockets closed since the last such pass reach a quarter of those open, or
:data:`MIN_CLOSED` (CPython's own rule for its full passes: a quarter more
long-lived objects): memory stays within a constant factor of what the open
sockets need, and that pause comes with churn, not with every fan-out.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from reelflow_common.logging import get_logger

log = get_logger(__name__)

#: sockets closed before their cyclic garbage is reclaimed, however few are open
MIN_CLOSED = 256
#: seconds between looks (freezing and collecting run in the event loop, between messages)
TICK_S = 1.0


class GcPolicy:
    """Counts sockets opened and closed; each :meth:`tick` freezes or reclaims as they call for."""

    def __init__(self, *, min_closed: int = MIN_CLOSED) -> None:
        self._min_closed = min_closed
        self.open = 0
        self._opened_since_freeze = 0
        self._closed_since_full = 0
        self.freezes = 0
        self.full_passes = 0

    def opened(self) -> None:
        self.open += 1
        self._opened_since_freeze += 1

    def closed(self) -> None:
        self.open -= 1
        self._closed_since_full += 1

    @property
    def closed_since_full(self) -> int:
        """Sockets closed since the last full pass: their cycles may still be frozen."""
        return self._closed_since_full

    def tick(self) -> None:
        """Reclaim closed sockets' cycles when enough closed, else freeze new sockets' objects."""
        if self._closed_since_full >= max(self._min_closed, self.open // 4):
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()
            log.info(
                "gc_reclaimed",
                closed=self._closed_since_full,
                open=self.open,
                collected=collected,
                frozen=gc.get_freeze_count(),
            )
            self.full_passes += 1
            self._closed_since_full = 0
            self._opened_since_freeze = 0
        elif self._opened_since_freeze:
            # Young garbage (a handshake's) is freed first, so none of it is frozen.
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
            self._opened_since_freeze = 0

    @asynccontextmanager
    async def running(self, interval_s: float = TICK_S) -> AsyncIterator[GcPolicy]:
        """Tick in a task of its own until exit."""

        async def run() -> None:
            while True:
                await asyncio.sleep(interval_s)
                self.tick()

        task = asyncio.create_task(run(), name="gc_policy")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
