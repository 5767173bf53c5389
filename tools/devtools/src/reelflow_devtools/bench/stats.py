"""Percentiles and summaries of latency samples. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """count, p50, p95, p99, max and mean of samples in seconds, reported in milliseconds."""
    if not samples_s:
        return {"count": 0}
    return {
        "count": len(samples_s),
        "p50_ms": round(percentile(samples_s, 50) * 1000, 2),
        "p95_ms": round(percentile(samples_s, 95) * 1000, 2),
        "p99_ms": round(percentile(samples_s, 99) * 1000, 2),
        "max_ms": round(max(samples_s) * 1000, 2),
        "mean_ms": round(sum(samples_s) / len(samples_s) * 1000, 2),
    }


def parse_time(value: str) -> float:
    """An RFC 3339 timestamp as POSIX seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def sim_finished_at(task: dict[str, Any], sim_now: float) -> float:
    """When the simulator finished a task, as POSIX seconds.

    ``task`` is a ``/__sim/tasks`` entry read at ``sim_now`` (taken just before the
    request, so the simulator's own "now" is at most a request's time later).
    """
    elapsed: float = task["elapsed_seconds"]
    latency: float = max(task["latency_seconds"])
    return sim_now - elapsed + latency
