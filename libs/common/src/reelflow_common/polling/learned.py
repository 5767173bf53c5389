"""The poll planner that learns: checks where completions are likely, none where not.

Per profile it plans from the distribution of observed completion times
(:class:`~reelflow_common.polling.book.CompletionBook`):

- **Polling only**: the plan of :func:`~reelflow_common.polling.schedule.optimal_plan`,
  the first check between the earliest plausible finish (a low quantile) and
  ``delay_target`` after it, then the fewest checks that keep
  ``P(delay > delay_target) ≤ late_fraction``, never more than ``max_interval``
  apart. Plans are cached and remade only when the book's snapshot changes, so a
  call costs a dictionary lookup and a bisection.
- **Progress**: when Runware reports ``progress`` (1-98), the latest finish a
  linear progress allows is ``elapsed · 100 / progress``; the next check comes
  just after it, so a linear task is seen at the first check after its end.
  Progress of 0, 99 (a task may sit there) or anything else is ignored. A task
  whose progress stalls or goes backwards only moves its prediction later; the
  interval bound keeps those checks at most ``max_interval`` apart, and a floor
  of 5 % of the elapsed time keeps a task that creeps towards 99 from being
  checked ever more often.
- **Webhooks**: polling is a safety net. The first check comes at a high quantile
  (``webhook_quantile``), then one every ``webhook_interval``; progress is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelflow_common.polling.book import CompletionBook, profile_key, usable_progress
from reelflow_common.polling.plan import ClipProfile
from reelflow_common.polling.schedule import Plan, Target, optimal_plan
from reelflow_common.settings import PollingSettings

#: Runware's progress is an integer; the simulator truncates. The margin absorbs
#: that, and the few hundred milliseconds between our clock and Runware's.
_PROGRESS_MARGIN_S = 0.5
_PROGRESS_MARGIN_FRACTION = 0.01
_PROGRESS_FLOOR_FRACTION = 0.05


@dataclass(frozen=True)
class PlannerConfig:
    """The planner's targets and bounds (from ``PollingSettings``)."""

    delay_target_s: float = 10.0
    late_fraction: float = 0.05
    max_interval_s: float = 60.0
    first_quantile: float = 0.01
    webhook_quantile: float = 0.99
    webhook_interval_s: float = 300.0
    min_interval_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: PollingSettings) -> PlannerConfig:
        return cls(
            delay_target_s=settings.poll_delay_target_s,
            late_fraction=settings.poll_late_fraction,
            max_interval_s=settings.poll_max_interval_s,
            first_quantile=settings.poll_first_quantile,
            webhook_quantile=settings.poll_webhook_quantile,
            webhook_interval_s=settings.poll_webhook_interval_s,
        )

    def target(self) -> Target:
        return Target(
            delay_s=self.delay_target_s,
            late_fraction=self.late_fraction,
            max_interval_s=self.max_interval_s,
            first_quantile=self.first_quantile,
        )


class LearnedPlanner:
    """A :class:`~reelflow_common.polling.plan.PollPlanner` that plans from a book."""

    def __init__(self, book: CompletionBook, config: PlannerConfig | None = None) -> None:
        self.book = book
        self.config = config or PlannerConfig()
        self._plans: dict[tuple[str, bool], Plan] = {}
        self._version = book.version

    def plan(self, profile: ClipProfile) -> Plan:
        """The current plan for this profile (remade only after the book changed)."""
        if self._version != self.book.version:
            self._plans.clear()
            self._version = self.book.version
        key = (profile_key(profile), profile.webhooks)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(profile)
            self._plans[key] = plan
        return plan

    def _make_plan(self, profile: ClipProfile) -> Plan:
        dist = self.book.distribution(profile)
        if profile.webhooks:
            first = dist.quantile(self.config.webhook_quantile)
            return Plan((first,), self.config.webhook_interval_s)
        return optimal_plan(dist, self.config.target())

    def first_check_s(self, profile: ClipProfile) -> float:
        return self.plan(profile).checks[0]

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        plan = self.plan(profile)
        bound = plan.tail_interval_s
        predicted = None if profile.webhooks else _after_predicted_finish(elapsed_s, progress)
        if predicted is not None:
            delay = predicted
        else:
            # A check a little early (a delay rounded to a queue's TTL) is still that check.
            delay = plan.next_after(elapsed_s + self.config.min_interval_s) - elapsed_s
        return min(bound, max(self.config.min_interval_s, delay))

    def previous_check_s(self, profile: ClipProfile, elapsed_s: float) -> float:
        """When the plan had the check before the one at ``elapsed_s`` (0: submission).

        For a caller that does not carry the previous check's time: a fair guess when
        the check followed the plan, a guess only when progress moved it.
        """
        plan = self.plan(profile)
        tolerance = self.config.min_interval_s
        earlier = [t for t in plan.checks if t < elapsed_s - tolerance]
        if earlier:
            last = earlier[-1]
            if last == plan.checks[-1]:
                steps = int((elapsed_s - tolerance - last) // plan.tail_interval_s)
                return last + steps * plan.tail_interval_s
            return last
        return 0.0

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        self.book.observe(
            profile, elapsed_s=elapsed_s, since_s=since_s, since_progress=since_progress
        )


def _after_predicted_finish(elapsed_s: float, progress: int | None) -> float | None:
    """Seconds until just after the latest finish a linear ``progress`` allows, or None."""
    if progress is None or not usable_progress(progress) or elapsed_s <= 0:
        return None
    finish = elapsed_s * 100.0 / progress
    delay = finish - elapsed_s + _PROGRESS_MARGIN_S + _PROGRESS_MARGIN_FRACTION * finish
    return max(delay, _PROGRESS_FLOOR_FRACTION * elapsed_s)
