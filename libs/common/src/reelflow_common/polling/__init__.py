"""When to ask Runware again: the poll planners and what they learn from."""

from reelflow_common.polling.book import CompletionBook, profile_key
from reelflow_common.polling.learned import LearnedPlanner, PlannerConfig
from reelflow_common.polling.live import OnLadder, SharedPlanner, shared_planner
from reelflow_common.polling.plan import ClipProfile, FixedLadderPlanner, PollPlanner
from reelflow_common.polling.stats import PollStats

__all__ = [
    "ClipProfile",
    "CompletionBook",
    "FixedLadderPlanner",
    "LearnedPlanner",
    "OnLadder",
    "PlannerConfig",
    "PollPlanner",
    "PollStats",
    "SharedPlanner",
    "profile_key",
    "shared_planner",
]
