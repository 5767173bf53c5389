"""The poller's decisions, pure: no broker, no database, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from reelflow_common.runware import ErrorCategory, RunwareError, TaskState


@dataclass(frozen=True)
class Succeeded:
    state: TaskState


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


@dataclass(frozen=True)
class CheckAgain:
    delay_s: float


Decision = Succeeded | Failed | CheckAgain

TIMED_OUT = "timedOut"


def next_check_delay_s(attempt: int, *, initial_s: float, backoff: float, cap_s: float) -> float:
    """Delay before check number ``attempt + 1``: ``initial * backoff**attempt``, capped."""
    delay = initial_s
    # Grown step by step, not by ``backoff**attempt``, which overflows for a long-lived clip.
    for _ in range(attempt):
        if delay >= cap_s or backoff <= 1.0:
            break
        delay *= backoff
    return float(min(cap_s, delay))


@dataclass(frozen=True)
class Policy:
    initial_s: float
    backoff: float
    cap_s: float
    max_age_s: float
    not_found_grace_s: float

    def check_again(self, attempt: int, age_s: float) -> Decision:
        """Runware says the task is unfinished: check later, or give up past the maximum age."""
        if age_s >= self.max_age_s:
            return Failed(
                TIMED_OUT, f"Runware had not finished the task {age_s:.0f} s after submission."
            )
        return self.next_check(attempt)

    def next_check(self, attempt: int) -> CheckAgain:
        return CheckAgain(
            next_check_delay_s(
                attempt, initial_s=self.initial_s, backoff=self.backoff, cap_s=self.cap_s
            )
        )

    def failure(self, state: TaskState, *, attempt: int, age_s: float) -> Decision:
        """A task Runware reports in error: failed, unless it is only not visible yet."""
        failure = state.error
        code = (failure.code if failure else None) or "taskFailed"
        if failure is not None and failure.category is ErrorCategory.NOT_FOUND:
            return self.after_not_found(code, failure.message, attempt=attempt, age_s=age_s)
        return Failed(code, failure.message if failure else "Runware reported an error.")

    def after_state(self, state: TaskState, *, attempt: int, age_s: float) -> Decision:
        """What a task state (from a poll or a webhook) means for the clip."""
        if state.status == "success":
            if not state.video_url:
                # A success without a video is of no use to anyone: ask again.
                return self.next_check(attempt)
            return Succeeded(state)
        if state.status == "error":
            return self.failure(state, attempt=attempt, age_s=age_s)
        return self.check_again(attempt, age_s)

    def after_error(self, error: RunwareError, *, attempt: int, age_s: float) -> Decision:
        """Runware could not say where the task stands."""
        if error.category is ErrorCategory.NOT_FOUND and error.task_uuid is not None:
            return self.after_not_found(
                error.code or "taskFailedOrNotFound", error.message, attempt=attempt, age_s=age_s
            )
        # An outage, a refused request or a misconfigured key: nothing is known about
        # the task, which may well finish (and be billed); never time it out on that.
        return self.next_check(attempt)

    def after_not_found(self, code: str, message: str, *, attempt: int, age_s: float) -> Decision:
        # Right after a submit the task may not be visible yet (runware-api.md §3.3).
        if age_s < self.not_found_grace_s:
            return self.check_again(attempt, age_s)
        return Failed(code, message or "Runware does not know this task.")
