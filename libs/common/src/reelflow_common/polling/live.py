"""The planner the services run: learned from every replica's completions.

The poller (every check, the reconciler's re-arms), the submitter (the first
check after a submit) and ``reelflow-admin reconcile`` all plan with
:func:`shared_planner`: a :class:`~reelflow_common.polling.learned.LearnedPlanner`
over a :class:`~reelflow_common.polling.book.CompletionBook` that
:class:`~reelflow_common.polling.stats.PollStats` fills from ``poll_stats``
(every replica's completions, every restart's).

Its delays are delivered as planned, to within half the shortest rung of the
check wait queues (:mod:`~reelflow_common.polling.delivery`: the longest rung
not above the delay, then hops for the rest). :class:`OnLadder` is what putting
each delay on the nearest rung instead would do; the polling benchmark keeps it
as a row (nearest rather than "never above": rounding every delay down cost 1.7
times the calls without progress, 15.1 against 8.9).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reelflow_common.backoff import Backoff
from reelflow_common.mongo import Database
from reelflow_common.polling.book import CompletionBook
from reelflow_common.polling.histogram import generic_prior
from reelflow_common.polling.learned import LearnedPlanner, PlannerConfig
from reelflow_common.polling.plan import ClipProfile, PollPlanner
from reelflow_common.polling.stats import PollStats
from reelflow_common.settings import PollingSettings


class OnLadder:
    """A planner whose delays are put on the check wait queues' ladder, within ``bound_s``."""

    def __init__(self, planner: PollPlanner, ladder: Backoff, *, bound_s: float) -> None:
        self.planner = planner
        self._ladder = ladder
        self._bound_s = bound_s

    def _on_ladder(self, delay_s: float) -> float:
        rung_s = self._ladder.nearest_rung_ms(delay_s) / 1000
        if rung_s > self._bound_s >= delay_s:
            rung_s = self._ladder.rung_at_most_ms(delay_s) / 1000
        return rung_s

    def first_check_s(self, profile: ClipProfile) -> float:
        return self._on_ladder(self.planner.first_check_s(profile))

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        wanted = self.planner.next_check_s(profile, elapsed_s=elapsed_s, progress=progress)
        return self._on_ladder(wanted)

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        self.planner.observe_completion(
            profile, elapsed_s=elapsed_s, since_s=since_s, since_progress=since_progress
        )


@dataclass(frozen=True)
class SharedPlanner:
    """The live planner and the statistics it plans from (run :attr:`stats` alongside)."""

    planner: LearnedPlanner
    stats: PollStats


def shared_planner(db: Database, settings: PollingSettings, ladder: Backoff) -> SharedPlanner:
    """A learned planner whose counts are shared through ``poll_stats``; its shortest
    step is the shortest rung of ``ladder``, the check wait queues.

    Until the first :meth:`PollStats.load` (and for a model nobody has seen finish
    yet) it plans from the generic prior. A service calls ``stats.refresh()`` before
    it takes messages, then runs ``stats.run(stop, settings.poll_stats_interval_s)``
    to write its completions and re-read everyone's; a process that only plans
    (never observes) writes nothing.
    """
    book = CompletionBook(prior=generic_prior(settings.poll_prior_median_s))
    stats = PollStats(db, book, days=settings.poll_stats_days)
    # The shortest step the plan takes is the ladder's shortest rung: no delay is shorter.
    config = replace(PlannerConfig.from_settings(settings), min_interval_s=ladder.first_s)
    return SharedPlanner(LearnedPlanner(book, config), stats)
