"""The cyclic garbage collector's pauses, by generation, as a histogram on ``/metrics``.

Every pass stops every socket of the replica, so its length is part of the
latency of every message sent during it. prometheus_client already counts
passes per generation (``python_gc_collections_total``); this times them.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSE_SECONDS = Histogram(
    "reelflow_gc_pause_seconds",
    "Wall time of each pass of Python's cyclic garbage collector, by generation (0, 1, 2).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class PauseTimer:
    """A ``gc.callbacks`` entry observing each pass into :data:`GC_PAUSE_SECONDS`."""

    def __init__(self) -> None:
        self._children = [GC_PAUSE_SECONDS.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started)


def time_pauses() -> None:
    """Time every pass from now on (once per process; a second call changes nothing)."""
    if not any(isinstance(callback, PauseTimer) for callback in gc.callbacks):
        gc.callbacks.append(PauseTimer())
