"""The check schedule that costs fewest getResponse calls for a detection-delay target.

Given the distribution ``F`` of completion times ``L`` (seconds since submission),
a plan is a list of check times ``t_1 < t_2 < …``. A clip finishing in
``(t_{k-1}, t_k]`` is seen at ``t_k`` after ``k`` calls, so

    E[calls]        = Σ_k P(L > t_{k-1})             (t_0 = 0)
    P(delay > τ)    = Σ_k P(t_{k-1} < L < t_k - τ)

We minimise ``E[calls] + λ·P(delay > τ)`` by a dynamic programme over a time grid
of at most ``_MAX_POINTS`` points, from the earliest plausible finish (a low
quantile: no check before it) to a high quantile. The state is the time of the
last check; a step from ``t_i`` to ``t_j`` costs ``P(L > t_i) + λ·P(t_i < L < t_j - τ)``
and may not be longer than ``max_interval`` (the freshness guarantee); past the grid,
checks come every ``max_interval``. A step's cost depends only on its two ends, so
one backward pass finds the best plan on the grid in ``O(points · max_interval /
step)``. ``λ`` is then found by bisection as the smallest penalty whose plan meets
``P(delay > τ) ≤ late_fraction``: the cheapest plan on the grid that meets the target.
A plan takes tens of milliseconds and is recomputed only when the distribution changes.

The first check comes at most ``τ`` after the earliest plausible finish, so at most
``first_quantile`` of the completions wait longer than ``τ`` for it. Left free, the
programme spends the whole late budget there (checks ``τ`` apart are never late),
on the part of the distribution known least, its low tail, and on the clips that
``progress`` cannot help: those that finish before the first check. A first check
a few seconds late then makes a p95 past the target.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from dataclasses import dataclass

from reelflow_common.polling.histogram import Histogram

_MAX_POINTS = 300
_POINTS_PER_TARGET = 4  # grid step ≤ τ/4, so the grid costs at most τ/4 of delay
_BISECTIONS = 24
_HORIZON_QUANTILE = 0.999
_NEGLIGIBLE = 1e-9


@dataclass(frozen=True)
class Target:
    """What a plan must achieve: ``P(delay > delay_s) ≤ late_fraction``, checks ≤ max apart."""

    delay_s: float
    late_fraction: float
    max_interval_s: float
    #: no check before this quantile of the completion time (the earliest plausible finish)
    first_quantile: float


@dataclass(frozen=True)
class Plan:
    """Check times in seconds since submission, then one every ``tail_interval_s``."""

    checks: tuple[float, ...]
    tail_interval_s: float
    expected_calls: float = math.nan
    late_fraction: float = math.nan

    def __post_init__(self) -> None:
        if not self.checks or self.tail_interval_s <= 0:
            raise ValueError("a plan needs at least one check and a positive tail interval")
        if any(b <= a for a, b in itertools.pairwise(self.checks)):
            raise ValueError("check times must increase")

    def next_after(self, elapsed_s: float) -> float:
        """The first planned check time strictly after ``elapsed_s``."""
        k = bisect_right(self.checks, elapsed_s)
        if k < len(self.checks):
            return self.checks[k]
        last, interval = self.checks[-1], self.tail_interval_s
        steps = math.floor((elapsed_s - last) / interval) + 1
        while last + steps * interval <= elapsed_s:  # rounding must never stall the tail
            steps += 1
        return last + steps * interval


def measure(dist: Histogram, plan: Plan, delay_s: float) -> tuple[float, float]:
    """(E[calls], P(delay > delay_s)) of ``plan`` when completions follow ``dist``."""
    calls = late = previous = 0.0
    at = plan.checks[0]
    while (survival := 1.0 - dist.cdf(previous)) > _NEGLIGIBLE:
        calls += survival
        late += max(0.0, dist.cdf(at - delay_s) - dist.cdf(previous))
        previous, at = at, plan.next_after(at)
    return calls, late


def optimal_plan(dist: Histogram, target: Target) -> Plan:
    """The cheapest plan on the grid with ``P(delay > τ) ≤ late_fraction`` (see module doc)."""
    grid = _Grid.build(dist, target)
    plan = grid.solve(0.0)
    if plan.late_fraction <= target.late_fraction:
        return plan
    low, high = 0.0, 1.0
    while (dense := grid.solve(high)).late_fraction > target.late_fraction and high < 1e8:
        low, high = high, high * 4.0
    best = dense
    for _ in range(_BISECTIONS):
        middle = math.sqrt(low * high) if low > 0 else high / 4.0
        candidate = grid.solve(middle)
        if candidate.late_fraction <= target.late_fraction:
            high, best = middle, candidate
        else:
            low = middle
    return best


@dataclass(frozen=True)
class _Grid:
    """The candidate check times and what the distribution says about each."""

    times: tuple[float, ...]
    done: tuple[float, ...]  # F(t_j)
    done_before_target: tuple[float, ...]  # F(t_j - τ)
    reach: int  # the most grid steps one interval may span
    first_reach: int  # the first check: at most this many steps after the grid's start
    tail_calls: float
    tail_late: float
    max_interval_s: float

    @classmethod
    def build(cls, dist: Histogram, target: Target) -> _Grid:
        start = dist.quantile(target.first_quantile)
        end = max(dist.quantile(_HORIZON_QUANTILE), start + target.max_interval_s)
        step = max(target.delay_s / _POINTS_PER_TARGET, (end - start) / (_MAX_POINTS - 1))
        step = min(step, target.max_interval_s / 2)
        count = math.ceil((end - start) / step) + 1
        times = tuple(start + i * step for i in range(count))
        tail_calls, tail_late = _tail(dist, times[-1], target.max_interval_s, target.delay_s)
        return cls(
            times=times,
            done=tuple(dist.cdf(t) for t in times),
            done_before_target=tuple(dist.cdf(t - target.delay_s) for t in times),
            reach=max(1, math.floor(target.max_interval_s / step + 1e-9)),
            first_reach=math.floor(min(target.delay_s, target.max_interval_s) / step + 1e-9),
            tail_calls=tail_calls,
            tail_late=tail_late,
            max_interval_s=target.max_interval_s,
        )

    def solve(self, penalty: float) -> Plan:
        """The plan minimising ``E[calls] + penalty · P(delay > τ)`` on this grid."""
        n = len(self.times)
        cost = [0.0] * n
        following = [0] * n
        cost[-1] = self.tail_calls + penalty * self.tail_late
        for i in range(n - 2, -1, -1):
            done_i = self.done[i]
            best, best_j = math.inf, i + 1
            for j in range(i + 1, min(n, i + self.reach + 1)):
                late = self.done_before_target[j] - done_i
                value = cost[j] + penalty * late if late > 0 else cost[j]
                if value < best:
                    best, best_j = value, j
            cost[i] = (1.0 - done_i) + best
            following[i] = best_j
        # The first check: from the earliest plausible finish to at most τ later (see
        # the module doc).
        first = min(
            range(min(n, self.first_reach + 1)),
            key=lambda j: cost[j] + penalty * self.done_before_target[j],
        )
        path = [first]
        while path[-1] < n - 1:
            path.append(following[path[-1]])
        calls = 1.0 + sum(1.0 - self.done[i] for i in path[:-1]) + self.tail_calls
        late = self.done_before_target[first] + self.tail_late
        late += sum(
            max(0.0, self.done_before_target[j] - self.done[i]) for i, j in itertools.pairwise(path)
        )
        return Plan(
            tuple(self.times[i] for i in path),
            self.max_interval_s,
            expected_calls=calls,
            late_fraction=late,
        )


def _tail(
    dist: Histogram, start_s: float, interval_s: float, delay_s: float
) -> tuple[float, float]:
    """(calls, P(late)) of the checks every ``interval_s`` after one at ``start_s``."""
    calls = late = 0.0
    at = start_s
    while (survival := 1.0 - dist.cdf(at)) > _NEGLIGIBLE:
        calls += survival
        late += max(0.0, dist.cdf(at + interval_s - delay_s) - dist.cdf(at))
        at += interval_s
    return calls, late
