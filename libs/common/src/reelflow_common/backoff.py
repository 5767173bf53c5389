"""One type for every delay decision: retries, polls, wait-queue rungs, waiting at start.

A :class:`Backoff` is a schedule of delays: ``first_s``, then ``factor`` times
longer after each failed attempt, never above ``cap_s``, optionally jittered.
Delays that travel through RabbitMQ can only take the fixed TTLs of the wait
queues: :meth:`Backoff.rungs_ms` is that ladder (one queue per rung), and
:meth:`Backoff.rung_ms` / :meth:`Backoff.nearest_rung_ms` /
:meth:`Backoff.rung_at_most_ms` put a delay on it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cached_property

#: the process-wide generator, for callers that do not need a reproducible one
_RANDOM = random.Random()


@dataclass(frozen=True)
class Backoff:
    """``first_s``, ``first_s * factor``, … up to ``cap_s``; ``jitter`` shortens each at random.

    With ``jitter`` j, a delay d is drawn from ``[(1 - j) * d, d]``: replicas that
    failed together do not all come back at the same moment, and no delay ever
    exceeds the schedule.
    """

    first_s: float
    cap_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (self.first_s > 0 and self.cap_s > 0):
            raise ValueError("first_s and cap_s must be positive")
        if self.factor < 1.0:
            raise ValueError("factor must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after ``attempt`` earlier failures (0: before the first retry)."""
        delay = self.first_s
        # Grown step by step, not as ``factor**attempt``, which overflows for a long-lived
        # chain; the loop ends at the cap, so it runs a few dozen times at most.
        for _ in range(max(0, attempt)):
            if delay >= self.cap_s or self.factor == 1.0:
                break
            delay *= self.factor
        delay = min(delay, self.cap_s)
        if self.jitter:
            delay *= (rng or _RANDOM).uniform(1.0 - self.jitter, 1.0)
        return float(delay)

    @cached_property
    def _rungs(self) -> tuple[int, ...]:
        rungs: list[int] = []
        delay = self.first_s
        while True:
            ms = max(1, round(min(delay, self.cap_s) * 1000))
            if not rungs or ms > rungs[-1]:
                rungs.append(ms)
            if delay >= self.cap_s or self.factor == 1.0:
                break
            delay *= self.factor
        # The ladder always reaches the cap, so any delay up to the cap has a rung near it
        # (with ``factor`` 1 the schedule never climbs, but a caller may ask for longer).
        if rungs[-1] < round(self.cap_s * 1000):
            rungs.append(round(self.cap_s * 1000))
        return tuple(rungs)

    def rungs_ms(self) -> tuple[int, ...]:
        """The schedule (without jitter) in whole milliseconds, ending at the cap: one TTL each."""
        return self._rungs

    def rung_ms(self, attempt: int) -> int:
        """The rung to wait on after ``attempt`` earlier failures: up the ladder, then the cap."""
        rungs = self._rungs
        return rungs[min(max(0, attempt), len(rungs) - 1)]

    def nearest_rung_ms(self, delay_s: float) -> int:
        """The rung nearest to ``delay_s`` on a log scale (the shortest one for tiny delays).

        Nearest rather than "not above", so that a jittered delay between two rungs
        lands on either, and the jitter survives the ladder's granularity.
        """
        wanted = max(delay_s * 1000, 1e-9)
        return min(self._rungs, key=lambda ms: abs(math.log(ms / wanted)))

    def rung_at_most_ms(self, delay_s: float) -> int:
        """The longest rung not above ``delay_s`` (the shortest one for tiny delays).

        For a delay that is a bound: what waits on it never comes later than asked.
        """
        wanted = delay_s * 1000
        return max((ms for ms in self._rungs if ms <= wanted), default=self._rungs[0])
