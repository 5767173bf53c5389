"""The submitter's decisions, pure: no broker, no database, no HTTP."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from reelflow_common.backoff import Backoff
from reelflow_common.messages import SubmitClip
from reelflow_common.polling import ClipProfile
from reelflow_common.runware import RunwareError, VideoRequest


@dataclass(frozen=True)
class RetryLater:
    """Submit again, with the same task UUID, after ``delay_s``."""

    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """The submits are over: the clip fails with Runware's code and message (unless it holds it)."""

    code: str
    message: str


@dataclass(frozen=True)
class NotVisibleYet:
    """Runware does not know the task yet, inside the visibility grace: ask again later."""

    delay_s: float


def video_request(message: SubmitClip, *, webhook_url: str | None) -> VideoRequest:
    request = message.request
    return VideoRequest(
        task_uuid=message.task_uuid,
        model=message.model,
        positive_prompt=request.prompt,
        duration=request.duration,
        width=request.width,
        height=request.height,
        negative_prompt=request.negative_prompt,
        seed=request.seed,
        fps=request.fps,
        webhook_url=webhook_url,
    )


def profile(message: SubmitClip, *, webhooks: bool) -> ClipProfile:
    """What the poll planner may know of the clip before its first check."""
    request = message.request
    return ClipProfile(
        model=message.model,
        duration=request.duration,
        width=request.width,
        height=request.height,
        webhooks=webhooks,
    )


def after_submit_error(
    error: RunwareError,
    *,
    attempt: int,
    max_attempts: int,
    backoff: Backoff,
    rng: random.Random,
) -> RetryLater | GiveUp:
    """What to do when Runware did not take the task: attempt N retries after ``backoff``'s
    delay for N - 1 earlier failures (its first delay after the first attempt)."""
    if error.retryable and attempt < max_attempts:
        return RetryLater(backoff.delay_s(attempt - 1, rng))
    return GiveUp(code=error.code or error.category.value, message=error.message)


def may_hold_task(error: RunwareError, *, attempt: int) -> bool:
    """Whether Runware may hold the task despite this answer (so it must be asked first).

    A retryable failure may have come after Runware stored the task, and so may any
    answer after an earlier attempt; a first submit refused outright created nothing.
    """
    return error.retryable or attempt > 1


def after_not_found(
    *, now: datetime, first_attempt_at: datetime, grace_s: float, backoff: Backoff
) -> NotVisibleYet | None:
    """Runware does not know the task: wait while it may not be visible yet, else None (fail).

    The grace counts from this chain's first submit, on the database's clock: a task
    Runware accepted that long ago is visible by now (docs/RUNWARE.md §3.3).
    """
    waited_s = (now - first_attempt_at).total_seconds()
    if waited_s >= grace_s:
        return None
    return NotVisibleYet(max(backoff.first_s, min(grace_s - waited_s, backoff.cap_s)))
