"""What Runware's answer about a task means for its clip, pure: no broker, no database, no HTTP.

One function reads what Runware said about a task (a state, or an error) and
decides: record the end, or keep watching. It is shared by the poll chains, the
webhook hints and the reconciler (the poller's passes and ``reelflow-admin
reconcile``), so all agree on what a task's answer means. Every path that keeps
watching has the same ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reelflow_common.backoff import Backoff
from reelflow_common.domain import ClipRequest
from reelflow_common.messages import CheckClip
from reelflow_common.polling import ClipProfile
from reelflow_common.runware import (
    ErrorCategory,
    RunwareError,
    TaskState,
    is_task_not_found,
)
from reelflow_common.store import TIMED_OUT, Project, TaskFailed, TaskResult, TaskSucceeded

__all__ = [
    "TIMED_OUT",
    "Keep",
    "Policy",
    "Record",
    "Watch",
    "describe",
    "profile_of",
    "progress_to_store",
    "seconds_between",
    "terminal_result",
]


def profile_of(message: CheckClip) -> ClipProfile:
    """What the planner knows a clip by, from the check that follows it."""
    return ClipProfile(
        model=message.model,
        duration=message.duration,
        width=message.width,
        height=message.height,
        webhooks=message.webhooks,
    )


def profile_of_clip(project: Project, scene_index: int) -> ClipProfile:
    """What the planner knows a clip by, from its project (its request, when read with it)."""
    request = None if project.requests is None else project.requests[scene_index]
    return profile_of_request(project.model, request)


def profile_of_request(model: str, request: ClipRequest | None) -> ClipProfile:
    """What the planner knows a clip by, from its project's model and its scene's request."""
    return ClipProfile(
        model=model,
        duration=None if request is None else request.duration,
        width=None if request is None else request.width,
        height=None if request is None else request.height,
    )


def progress_to_store(progress: int | None, *, seen_before: int | None, step: int) -> int | None:
    """The progress worth storing on the clip, or None: one write per ``step`` points at most.

    Stored when it enters a higher band of ``step`` points than the chain's previous
    check saw (0: never). A task's progress only matters to the people watching, and
    every stored value is a database write and an event.
    """
    if step <= 0 or progress is None or not 0 < progress < 100:
        return None
    if progress // step <= (seen_before or 0) // step:
        return None
    return progress


def seconds_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def describe(outcome: TaskState | RunwareError) -> str:
    """Runware's answer about a task, in a few words (for logs and operators)."""
    if isinstance(outcome, TaskState):
        return outcome.status
    return f"{type(outcome).__name__}: {outcome}"


@dataclass(frozen=True)
class Record:
    """The task is over: record this on its clip."""

    result: TaskResult
    #: our ceiling (``timedOut``) on a watch of its own: the clip fails, and its task is
    #: followed on for this long, late (0: not followed; Runware's own end, a late follow's)
    late_follow_s: float = 0.0


@dataclass(frozen=True)
class Keep:
    """Not over yet (or Runware cannot say): keep watching; ``last_error`` if there was one."""

    progress: int | None = None
    last_error: str | None = None


Decision = Record | Keep


@dataclass(frozen=True)
class Watch:
    """How long a clip has been followed, in seconds on the database's clock."""

    #: since Runware accepted the task (the planner and the visibility grace count from here)
    since_submit_s: float
    #: since the current watch began (the ceiling counts from here)
    watched_s: float
    #: the last error an earlier check met
    last_error: str | None = None
    #: a late follow's ceiling (its ``follow_until``, from the watch's start); None: the
    #: policy's own (``poll_max_age_s``)
    ceiling_s: float | None = None


def terminal_result(state: TaskState) -> TaskResult | None:
    """What a state from Runware records, if it ends the task; None while it does not.

    A success without a video is of no use to anyone and ends nothing; neither does
    an error state that only says the task is unknown (it may not be visible yet).
    """
    if state.status == "success":
        if not state.video_url:
            return None
        return TaskSucceeded(
            video_url=state.video_url, video_uuid=state.video_uuid, cost=state.cost
        )
    if state.status == "error":
        failure = state.error
        if failure is not None and failure.category is ErrorCategory.NOT_FOUND:
            return None
        code = (failure.code if failure else None) or "taskFailed"
        message = (failure.message if failure else "") or "Runware reported an error."
        return TaskFailed(code=code, message=message)
    return None


class PolicySettings(Protocol):
    """``CeilingSettings`` with ``VisibilitySettings``, ``TopologySettings`` and
    ``LateFollowSettings``: the poller's, and ``reelflow-admin reconcile``'s."""

    poll_max_age_s: float
    not_found_grace_s: float
    poll_max_delay_s: float
    late_follow_s: float
    late_follow_max_delay_s: float


@dataclass(frozen=True)
class Policy:
    """How long a clip is followed: the ceiling, and the grace for a task not visible yet;
    then how long, and how often, its task is still followed late once the ceiling failed it.
    """

    max_age_s: float
    not_found_grace_s: float
    #: how long a task the ceiling gave up on is followed on (0: not; ``late_follow_s``)
    late_follow_s: float
    #: the late follow's checks: from the check ladder's top rung (``poll_max_delay_s``),
    #: doubling, up to ``late_follow_max_delay_s``
    late_checks: Backoff

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> Policy:
        """The policy of ``settings``, every figure from them (their defaults are the only
        ones)."""
        return cls(
            max_age_s=settings.poll_max_age_s,
            not_found_grace_s=settings.not_found_grace_s,
            late_follow_s=settings.late_follow_s,
            late_checks=Backoff(
                first_s=settings.poll_max_delay_s, cap_s=settings.late_follow_max_delay_s
            ),
        )

    def late_check_s(self, checks_made: int, *, left_s: float) -> float:
        """The delay before a late follow's next check, after ``checks_made`` of its checks:
        its ladder's, never past the follow's end (``left_s`` away)."""
        return max(0.0, min(self.late_checks.delay_s(checks_made), left_s))

    def decide(self, outcome: TaskState | RunwareError, watch: Watch) -> Decision:
        """What Runware's answer about a task means for its clip."""
        if isinstance(outcome, TaskState):
            result = terminal_result(outcome)
            if result is not None:
                return Record(result)  # Runware's answer: recorded past the ceiling too
            if outcome.status == "error" and outcome.error is not None:  # unknown task
                return self._not_found(
                    outcome.error.code or "taskFailedOrNotFound", outcome.error.message, watch
                )
            if outcome.status == "success":
                return self._keep(watch, "Runware reported success without a video URL")
            return self._keep(watch, None, progress=outcome.progress)
        if is_task_not_found(outcome):
            return self._not_found(outcome.code or "taskFailedOrNotFound", outcome.message, watch)
        # An outage, a refused request, a rotated key: nothing is known about the task.
        return self._keep(watch, str(outcome))

    def _not_found(self, code: str, message: str, watch: Watch) -> Decision:
        # Right after a submit the task may not be visible yet (docs/RUNWARE.md §3.3).
        if watch.since_submit_s < self.not_found_grace_s:
            return self._keep(watch, f"{code}: {message}")
        return Record(TaskFailed(code=code, message=message or "Runware does not know this task."))

    def _keep(self, watch: Watch, error: str | None, *, progress: int | None = None) -> Decision:
        last_error = error or watch.last_error
        if self.past_ceiling(watch):
            # A late follow's end is its last word; the ceiling of any other watch follows on.
            late = 0.0 if watch.ceiling_s is not None else self.late_follow_s
            return Record(self.timed_out(watch, last_error), late_follow_s=late)
        return Keep(progress=progress, last_error=last_error)

    def timed_out(self, watch: Watch, last_error: str | None) -> TaskFailed:
        """The ceiling: the clip fails on our side, saying what was last seen."""
        message = f"Runware had not finished the task {watch.watched_s:.0f} s into its watch."
        if watch.ceiling_s is not None:
            message += " Its late follow is over."
        if last_error:
            message += f" Last error: {last_error}"
        return TaskFailed(code=TIMED_OUT, message=message)

    def past_ceiling(self, watch: Watch) -> bool:
        ceiling_s = self.max_age_s if watch.ceiling_s is None else watch.ceiling_s
        return watch.watched_s >= ceiling_s
