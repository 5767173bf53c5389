"""The notifier scenario's hot clips finish after the poller's first check of them.

At production settings (the notifier's stack runs in real time) that check
finds every hot clip processing and stores its progress: 40 events at once. A
clip that finished before it would be seen in the same pass and queue behind
those fan-outs, which production's clips (99 % of them finish after it) do not.
"""

from __future__ import annotations

import math

from reelflow_common.backoff import Backoff
from reelflow_common.polling.book import CompletionBook
from reelflow_common.polling.histogram import generic_prior
from reelflow_common.polling.learned import LearnedPlanner, PlannerConfig
from reelflow_common.polling.plan import ClipProfile
from reelflow_common.settings import PollingSettings, TopologySettings
from reelflow_devtools.bench.notifier import NotifierPlan


def test_the_hot_clips_first_finish_comes_after_the_pollers_first_check() -> None:
    polling, topology = PollingSettings(), TopologySettings()
    # A model the poller has not seen finish: it plans from the prior.
    book = CompletionBook(prior=generic_prior(polling.poll_prior_median_s))
    planned_s = LearnedPlanner(book, PlannerConfig.from_settings(polling)).first_check_s(
        ClipProfile(model="bench:notifier@1", duration=4)
    )
    ladder = Backoff(
        first_s=topology.poll_initial_delay_s,
        cap_s=topology.poll_max_delay_s,
        factor=topology.poll_backoff,
    )
    # The check waits on a rung of the ladder: at the latest, the first one at or above it.
    above = [rung / 1000 for rung in ladder.rungs_ms() if rung >= planned_s * 1000]
    latest_s = min(above, default=math.inf)
    assert latest_s < NotifierPlan().first_finish_s
