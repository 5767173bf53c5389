"""When to ask Runware again: the poll planners and what they learn from."""

from reelflow_common.polling.plan import ClipProfile, FixedLadderPlanner, PollPlanner

__all__ = ["ClipProfile", "FixedLadderPlanner", "PollPlanner"]
