"""The planner the services run: learned from every replica's completions, on the check ladder.

The poller (every check, the reconciler's re-arms), the submitter (the first
check after a submit) and ``reelflow-admin reconcile`` all plan with
:func:`shared_planner`: a :class:`~reelflow_common.polling.learned.LearnedPlanner`
over a :class:`~reelflow_common.polling.book.CompletionBook` that
:class:`~reelflow_common.polling.stats.PollStats` fills from ``poll_stats``
(every replica's completions, every restart's), wrapped in an :class:`OnLadder`.

A delay travels through RabbitMQ as one of the fixed TTLs of the check wait
queues; :class:`OnLadder` puts each planned delay on the nearest rung (on a log
scale), except that a delay within ``poll_max_interval_s`` is never put on a
rung past it: the freshness bound holds whatever the ladder. Nearest, not "never
above": a check moved early misses its planned point and the planner plans
another one just after it (1.7 times the calls without progress in the
polling benchmark: 15.1 against 8.9); a delay below the shortest rung takes the shortest.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelflow_common.backoff import Backoff
from reelflow_common.mongo import Database
from reelflow_common.polling.book import CompletionBook
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

    planner: OnLadder
    stats: PollStats


def shared_planner(db: Database, settings: PollingSettings, ladder: Backoff) -> SharedPlanner:
    """A learned planner on ``ladder`` whose counts are shared through ``poll_stats``.

    Until the first :meth:`PollStats.load` (and for a model nobody has seen finish
    yet) it plans from the generic prior. A service calls ``stats.refresh()`` before
    it takes messages, then runs ``stats.run(stop, settings.poll_stats_interval_s)``
    to write its completions and re-read everyone's; a process that only plans
    (never observes) writes nothing.
    """
    book = CompletionBook()
    stats = PollStats(db, book, days=settings.poll_stats_days)
    learned = LearnedPlanner(book, PlannerConfig.from_settings(settings))
    return SharedPlanner(OnLadder(learned, ladder, bound_s=settings.poll_max_interval_s), stats)
