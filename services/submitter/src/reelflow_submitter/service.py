"""The submitter's decisions, pure: no broker, no database, no HTTP."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from reelflow_common.backoff import Backoff
from reelflow_common.domain import GIVEN_UP_CLIP_STATUSES, ClipStatus
from reelflow_common.messages import SubmitClip
from reelflow_common.runware import RunwareError, VideoRequest, is_outage
from reelflow_common.unread_window import in_unread_window

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


class BeforeSubmit(Enum):
    """What a chain does with a submit the clip may no longer want (:func:`before_resubmit`)."""

    #: the clip's task, queued: submit it
    SUBMIT = "submit"
    #: another task is the clip's now (an earlier task's video replaced this one): ask
    #: Runware, follow the task there as an attempt if an earlier submit got it there,
    #: else end the attempt ``failed``
    ASK_REPLACED = "ask_replaced"
    #: the clip's own task, but the clip was cancelled or failed meanwhile: ask Runware, and
    #: follow the task (billed: its video is recorded in ``attempts``) if an earlier submit
    #: got it there; else the chain ends, nothing bought
    ASK_GIVEN_UP = "ask_given_up"
    #: the clip's own task, cancelled or failed meanwhile, and no try of this chain can have
    #: got it to Runware (:func:`may_have_submitted`): nothing to ask, the chain ends
    NEVER_SUBMITTED = "never_submitted"
    #: nothing to submit or ask for: the project is gone, another chain follows the task
    #: (processing), or its video is recorded already
    DROP = "drop"


def reads_before_submit(
    message: SubmitClip, *, now: datetime, read_after_s: float, may_have_submitted: bool
) -> bool:
    """Whether the chain reads the clip before this submit (:func:`before_resubmit`).

    Every submit after the first (``attempt`` > 1: an outage, an unanswered or refused
    submit came first), since the clip may have been cancelled, or ended otherwise, while
    the chain waited; every submit of a retry's task, which an earlier task's late video
    may replace; every copy of a first submit but its first handling
    (:func:`may_have_submitted`: a redelivery, a copy retried after a failure, a re-armed
    chain), since the clip's first handling may have failed it meanwhile and the tenant
    retried it (a new task bought: this one, sent unread, would be bought as well); and a
    first submit of a clip queued more than ``read_after_s`` before ``now`` (database
    clock), which waited in its tenant's lane long enough to be cancelled meanwhile. Only
    the first handling of a clip's first submit within ``read_after_s`` of its queueing
    (``reelflow_common.unread_window``, which the cancel's count of clips that may be billed
    shares) reads nothing: a cancel inside that window may still buy it (the chain then
    follows it, billed).
    """
    if message.attempt > 1 or message.after_earlier_tasks or may_have_submitted:
        return True
    # A message from before ``queued_at``: its publisher's clock stands in for the database's
    # (the cancel, which has no message, counts a clip without ``queued_at`` as may be billed).
    queued_at = message.queued_at or message.occurred_at
    return not in_unread_window(queued_at, now=now, read_after_s=read_after_s)


def may_have_submitted(message: SubmitClip, *, first_handling: bool) -> bool:
    """Whether an earlier try of this chain may have got its task to Runware unseen.

    Not when this is the chain's first submit (``attempt`` 1: no outage, no unanswered or
    refused submit came before it), nothing records a submit that may have reached Runware
    (``last_ambiguous_at``; the reconciler sets it on a chain it re-arms, whose lost
    predecessor may have submitted), and the message is handled for the first time
    (``first_handling``: not redelivered after its holder crashed, nor retried after a
    failure, either of which may have come after Runware took the task).
    """
    return message.attempt > 1 or message.last_ambiguous_at is not None or not first_handling


def before_resubmit(
    task_uuid: str, clip: tuple[str, ClipStatus] | None, *, may_have_submitted: bool
) -> BeforeSubmit:
    """What to do with a submit of ``task_uuid``, given the clip's current task and status
    (None: no such clip) and whether an earlier try may have got the task to Runware
    (:func:`may_have_submitted`): if not, a cancelled or failed clip's chain asks nothing,
    so a cancelled backlog costs no Runware calls."""
    if clip is None:
        return BeforeSubmit.DROP
    current, status = clip
    if current != task_uuid:
        return BeforeSubmit.ASK_REPLACED
    if status is ClipStatus.QUEUED:
        return BeforeSubmit.SUBMIT
    if status in GIVEN_UP_CLIP_STATUSES:
        return BeforeSubmit.ASK_GIVEN_UP if may_have_submitted else BeforeSubmit.NEVER_SUBMITTED
    return BeforeSubmit.DROP


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


def may_hold_task(error: RunwareError, *, may_have_submitted: bool) -> bool:
    """Whether Runware may hold the task despite this answer (so it must be asked first).

    A retryable failure may have come after Runware stored the task, and so may any
    answer to a chain whose earlier try may have submitted (:func:`may_have_submitted`: a
    later attempt, a redelivery, a re-armed chain); a first submit refused outright
    created nothing.
    """
    return error.retryable or may_have_submitted


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
