"""The submitter's decisions, pure: no broker, no database, no HTTP."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from reelflow_common.backoff import Backoff
from reelflow_common.messages import SubmitClip
from reelflow_common.polling import ClipProfile
from reelflow_common.runware import RunwareError, VideoRequest, is_outage

#: the error code of a clip Runware could not take through an outage as long as the ceiling
RUNWARE_UNAVAILABLE = "runwareUnavailable"


@dataclass(frozen=True)
class RetryLater:
    """Submit again, with the same task UUID, after ``delay_s``; ``outage``: Runware gave no
    word on this submit, so it spends none of the clip's attempts."""

    delay_s: float
    outage: bool = False


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
    outages: int,
    waited_s: float,
    max_attempts: int,
    max_wait_s: float,
    backoff: Backoff,
    rng: random.Random,
) -> RetryLater | GiveUp:
    """What to do when Runware did not take the task: attempt N retries after ``backoff``'s
    delay for N - 1 earlier submits (its first delay after the first attempt).

    An outage (no answer, 408, 429, 5xx: :func:`is_outage`) is retried until the clip has
    waited ``max_wait_s`` since its first submit, whatever its attempts; any other retryable
    error spends an attempt, of ``max_attempts`` (``outages`` submits do not count).
    """
    delay_s = backoff.delay_s(attempt - 1, rng)
    if is_outage(error):
        if waited_s < max_wait_s:
            return RetryLater(delay_s, outage=True)
        return GiveUp(
            code=RUNWARE_UNAVAILABLE,
            message=f"Runware was unavailable for {timedelta(seconds=round(waited_s))}"
            f" (its last answer: {error.message})",
        )
    if error.retryable and attempt - outages < max_attempts:
        return RetryLater(delay_s)
    return GiveUp(code=error.code or error.category.value, message=error.message)


def may_hold_task(error: RunwareError, *, attempt: int) -> bool:
    """Whether Runware may hold the task despite this answer (so it must be asked first).

    A retryable failure may have come after Runware stored the task, and so may any
    answer after an earlier attempt; a first submit refused outright created nothing.
    """
    return error.retryable or attempt > 1


def after_not_found(
    *, now: datetime, since: datetime, grace_s: float, backoff: Backoff
) -> NotVisibleYet | None:
    """Runware does not know the task: wait while it may not be visible yet, else None (fail).

    The grace counts from ``since``, the chain's last submit that may have reached Runware
    unseen, on the database's clock: a task Runware accepted that long ago is visible by
    now (docs/RUNWARE.md §3.3).
    """
    waited_s = (now - since).total_seconds()
    if waited_s >= grace_s:
        return None
    return NotVisibleYet(max(backoff.first_s, min(grace_s - waited_s, backoff.cap_s)))
