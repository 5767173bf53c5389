"""Exact evaluation of a poll planner on a sample of completion times (no clock, no I/O).

A clip that finishes ``latency`` seconds after submission is checked when the
planner says; the first check at or after ``latency`` sees it done. Its
getResponse calls are the checks up to and including that one, its detection
delay is that check's time minus ``latency``. Percentiles are nearest-rank (the
smallest sample value with at least that share of the sample at or below it).

Three ways of running the checks:

- :func:`evaluate`: one clip at a time, one HTTP request per check;
- :func:`evaluate_batched`: many clips in flight with staggered submissions;
  checks due within ``window_s`` of the first unsent one share one HTTP request
  (at most ``batch_size``), which goes out when the window closes or is full,
  and sees every task as it is at that moment;
- :func:`evaluate_webhooks`: Runware calls back ``delivery_s`` after the finish
  (or never, for a lost webhook) and reelflow confirms with one getResponse; the
  planner's safety-net checks before that are extra calls.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reelflow_common.polling.plan import ClipProfile, PollPlanner

#: (elapsed, latency) → the progress Runware would report, or None
ProgressModel = Callable[[float, float], int | None]


def linear_progress(elapsed_s: float, latency_s: float) -> int | None:
    """The simulator's progress: the elapsed share of the latency, truncated, at most 99."""
    if latency_s <= 0:
        return 99
    return min(99, int(100 * elapsed_s / latency_s))


def power_progress(exponent: float) -> ProgressModel:
    """Progress ``100·(elapsed/latency)**exponent``: ahead of time below 1, behind above."""

    def progress(elapsed_s: float, latency_s: float) -> int | None:
        if latency_s <= 0:
            return 99
        return min(99, int(100 * (elapsed_s / latency_s) ** exponent))

    return progress


@dataclass(frozen=True)
class ClipResult:
    """One clip: its latency, the getResponse calls it cost and how late it was seen."""

    latency_s: float
    calls: int
    delay_s: float | None  # None: still not seen at max_age


@dataclass(frozen=True)
class Summary:
    """The figures of one schedule on one sample."""

    clips: int
    calls_per_clip: float
    requests_per_clip: float
    p50_delay_s: float
    p95_delay_s: float
    p99_delay_s: float
    max_delay_s: float
    unseen: int

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.__dataclass_fields__}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(results: Sequence[ClipResult], requests: int | None = None) -> Summary:
    """Mean calls (and HTTP requests: one per call unless given) and delay percentiles."""
    delays = [r.delay_s for r in results if r.delay_s is not None]
    calls = sum(r.calls for r in results)
    n = len(results)
    return Summary(
        clips=n,
        calls_per_clip=calls / n,
        requests_per_clip=(calls if requests is None else requests) / n,
        p50_delay_s=percentile(delays, 50),
        p95_delay_s=percentile(delays, 95),
        p99_delay_s=percentile(delays, 99),
        max_delay_s=max(delays, default=math.nan),
        unseen=n - len(delays),
    )


def follow_clip(
    planner: PollPlanner,
    profile: ClipProfile,
    latency_s: float,
    *,
    progress: ProgressModel | None = None,
    learn: bool = False,
    max_age_s: float = 7200.0,
) -> ClipResult:
    """Check one clip as the poller would; with ``learn``, report what was seen."""
    at, previous, seen, calls = planner.first_check_s(profile), 0.0, None, 0
    while at <= max_age_s:
        calls += 1
        if at >= latency_s:
            if learn:
                planner.observe_completion(
                    profile, elapsed_s=at, since_s=previous, since_progress=seen
                )
            return ClipResult(latency_s, calls, at - latency_s)
        seen = progress(at, latency_s) if progress else None
        previous, at = at, at + planner.next_check_s(profile, elapsed_s=at, progress=seen)
    return ClipResult(latency_s, calls, None)


def evaluate(
    planner: PollPlanner,
    profile: ClipProfile,
    latencies: Sequence[float],
    *,
    progress: ProgressModel | None = None,
    learn: bool = False,
    commit: Callable[[], None] | None = None,
    commit_every: int = 100,
) -> Summary:
    """Follow each clip in turn; with ``learn``, ``commit()`` every ``commit_every`` clips
    (a flush and reload of the shared statistics)."""
    results = []
    for i, latency in enumerate(latencies, start=1):
        results.append(follow_clip(planner, profile, latency, progress=progress, learn=learn))
        if learn and commit is not None and i % commit_every == 0:
            commit()
    if learn and commit is not None:
        commit()
    return summarize(results)


def staggered_starts(count: int, in_flight: float, mean_latency_s: float) -> list[float]:
    """Submission times spaced evenly so that about ``in_flight`` clips are followed at once."""
    gap = mean_latency_s / in_flight
    return [i * gap for i in range(count)]


def evaluate_batched(
    planner: PollPlanner,
    profile: ClipProfile,
    latencies: Sequence[float],
    starts: Sequence[float],
    *,
    window_s: float,
    batch_size: int,
    progress: ProgressModel | None = None,
    max_age_s: float = 7200.0,
) -> Summary:
    """Many clips at once, checks sharing HTTP requests (see the module docstring)."""
    due: list[tuple[float, int]] = [
        (start + planner.first_check_s(profile), i) for i, start in enumerate(starts)
    ]
    heapq.heapify(due)
    calls = [0] * len(latencies)
    delays: list[float | None] = [None] * len(latencies)
    requests = 0
    while due:
        opened, first = heapq.heappop(due)
        batch = [first]
        closes = opened + window_s
        while due and due[0][0] <= closes and len(batch) < batch_size:
            at, clip = heapq.heappop(due)
            batch.append(clip)
            if len(batch) == batch_size:
                closes = at  # full: it goes out with this check
        sent = closes
        requests += 1
        for clip in batch:
            calls[clip] += 1
            elapsed = sent - starts[clip]
            if elapsed >= latencies[clip]:
                delays[clip] = elapsed - latencies[clip]
                continue
            if elapsed > max_age_s:
                continue
            seen = progress(elapsed, latencies[clip]) if progress else None
            wait = planner.next_check_s(profile, elapsed_s=elapsed, progress=seen)
            heapq.heappush(due, (sent + wait, clip))
    results = [ClipResult(latency, calls[i], delays[i]) for i, latency in enumerate(latencies)]
    return summarize(results, requests=requests)


def evaluate_webhooks(
    planner: PollPlanner,
    profile: ClipProfile,
    latencies: Sequence[float],
    *,
    delivered: Callable[[int], bool] = lambda _: True,
    delivery_s: float = 0.0,
    max_age_s: float = 7200.0,
) -> Summary:
    """Webhooks on: the safety net's checks, plus one confirming call per delivered webhook."""
    results = []
    for i, latency in enumerate(latencies):
        hint = latency + delivery_s if delivered(i) else math.inf
        at, calls = planner.first_check_s(profile), 0
        seen_at: float | None = None
        while at <= max_age_s:
            if hint <= at:
                calls += 1
                seen_at = hint
                break
            calls += 1
            if at >= latency:
                seen_at = at
                break
            at += planner.next_check_s(profile, elapsed_s=at, progress=None)
        if seen_at is None and hint <= max_age_s:
            calls, seen_at = calls + 1, hint
        results.append(ClipResult(latency, calls, None if seen_at is None else seen_at - latency))
    return summarize(results)
