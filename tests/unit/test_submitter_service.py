"""The submitter's decisions: backoff with jitter, retry or give up, the Runware request."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_common.backoff import Backoff
from reelflow_common.domain import ClipRequest, ClipStatus
from reelflow_common.messages import SubmitClip
from reelflow_common.runware import (
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
)
from reelflow_common.runware.errors import ErrorCategory
from reelflow_common.topology import retry_backoff
from reelflow_submitter.service import (
    BeforeSubmit,
    GiveUp,
    NotVisibleYet,
    RetryLater,
    after_not_found,
    after_submit_error,
    before_resubmit,
    may_have_submitted,
    may_hold_task,
    reads_before_submit,
    video_request,
)
from reelflow_submitter.settings import Settings as SubmitterSettings


class _Extreme(random.Random):
    """A Random whose ``uniform`` returns one end of the range: the jitter's bounds."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self._end = end

    def uniform(self, a: float, b: float) -> float:
        return a if self._end == "low" else b


#: the default retry ladder (settings' 2 s to 120 s), as the submitter builds it
LADDER = retry_backoff(SubmitterSettings(retry_initial_delay_s=2, retry_max_delay_s=120))


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (7, 120.0), (30, 120.0), (5000, 120.0)],
)
def test_a_retry_waits_half_to_all_of_a_delay_that_doubles_per_attempt_up_to_the_cap(
    attempt: int, ceiling: float
) -> None:
    error = _unavailable()
    for end, expected in (("high", ceiling), ("low", ceiling / 2)):
        decision = after_submit_error(
            error,
            attempt=attempt,
            outages=0,
            waited_s=0,
            max_attempts=10_000,
            max_wait_s=3600,
            backoff=LADDER,
            rng=_Extreme(end),
        )
        assert decision == RetryLater(expected, outage=True)


def _decide(
    error: RunwareError,
    *,
    attempt: int,
    max_attempts: int = 5,
    outages: int = 0,
    waited_s: float = 0,
    max_wait_s: float = 3600,
) -> RetryLater | GiveUp:
    return after_submit_error(
        error,
        attempt=attempt,
        outages=outages,
        waited_s=waited_s,
        max_attempts=max_attempts,
        max_wait_s=max_wait_s,
        backoff=LADDER,
        rng=random.Random(1),
    )


def _unavailable() -> RunwareError:
    return RunwareRequestError(
        "Temporary capacity constraint. Retry later.", code="serviceUnavailable", http_status=503
    )


@pytest.mark.parametrize(
    "error",
    [
        _unavailable(),
        RunwareRequestError("Too many requests", code="rateLimitExceeded", http_status=429),
        RunwareTransportError(
            "no answer from Runware: RemoteProtocolError",
            code="connectionError",
            category=ErrorCategory.CONNECTION,
        ),
        RunwareTaskError("provider timed out", code="timeoutProvider", task_uuid="t"),
        RunwareRequestError("gateway", http_status=502),
    ],
    ids=["503", "429", "transport", "provider-timeout", "bare-502"],
)
def test_retryable_error_below_max_attempts_retries_later(error: RunwareError) -> None:
    decision = _decide(error, attempt=4, max_attempts=5)
    assert isinstance(decision, RetryLater)
    assert 8.0 <= decision.delay_s <= 16.0


def _provider_timeout() -> RunwareError:
    return RunwareTaskError("provider timed out", code="timeoutProvider", task_uuid="t")


def test_retryable_error_at_max_attempts_gives_up_with_runwares_code() -> None:
    decision = _decide(_provider_timeout(), attempt=5, max_attempts=5)
    assert decision == GiveUp("timeoutProvider", "provider timed out")


def test_retryable_error_past_max_attempts_gives_up() -> None:
    assert isinstance(_decide(_provider_timeout(), attempt=9, max_attempts=5), GiveUp)


def test_one_allowed_attempt_means_no_retry() -> None:
    assert isinstance(_decide(_provider_timeout(), attempt=1, max_attempts=1), GiveUp)


@pytest.mark.parametrize(
    "error",
    [
        _unavailable(),
        RunwareRequestError("Too many requests", code="rateLimitExceeded", http_status=429),
        RunwareTransportError("no answer from Runware: TimeoutError", code="timeout"),
        RunwareRequestError("gateway", http_status=502),
    ],
    ids=["503", "429", "transport", "bare-502"],
)
def test_an_outage_spends_no_attempt_and_is_retried_until_the_wait_is_over(
    error: RunwareError,
) -> None:
    long_after = _decide(error, attempt=500, max_attempts=5, waited_s=3599, max_wait_s=3600)
    assert isinstance(long_after, RetryLater)
    assert long_after.outage
    assert 60.0 <= long_after.delay_s <= 120.0  # the ladder's cap, never faster
    over = _decide(error, attempt=500, max_attempts=5, waited_s=3600, max_wait_s=3600)
    assert isinstance(over, GiveUp)
    assert over.code == "runwareUnavailable"
    assert over.message.startswith("Runware was unavailable for 1:00:00 (its last answer: ")


def test_only_the_submits_runware_answered_count_against_max_attempts() -> None:
    error = _provider_timeout()  # Runware's own answer about the task
    decision = _decide(error, attempt=10, outages=6, max_attempts=5)
    assert isinstance(decision, RetryLater)
    assert not decision.outage
    assert isinstance(_decide(error, attempt=10, outages=5, max_attempts=5), GiveUp)


def test_a_refusal_after_an_outage_still_fails_at_once() -> None:
    refused = RunwareTaskError("Duration 5 is not supported", code="unsupportedDuration")
    assert _decide(refused, attempt=7, outages=6) == GiveUp("unsupportedDuration", refused.message)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            RunwareTaskError(
                "Duration 5 is not supported", code="unsupportedDuration", task_uuid="t"
            ),
            "unsupportedDuration",
        ),
        (RunwareRequestError("bad key", code="invalidApiKey", http_status=401), "invalidApiKey"),
        (RunwareTaskError("blocked", code="contentPolicyViolation"), "contentPolicyViolation"),
        (RunwareRequestError("pay up", code="insufficientCredits"), "insufficientCredits"),
    ],
)
def test_non_retryable_error_gives_up_at_once_with_runwares_code_and_message(
    error: RunwareError, code: str
) -> None:
    decision = _decide(error, attempt=1, max_attempts=20)
    assert decision == GiveUp(code, error.message)


def test_an_error_without_a_code_gives_up_with_its_category() -> None:
    error = RunwareRequestError("Runware answered HTTP 400", http_status=400)
    assert _decide(error, attempt=1) == GiveUp(ErrorCategory.VALIDATION.value, error.message)


def _submit(**fields: object) -> SubmitClip:
    return SubmitClip.model_validate(
        {
            "project_id": "p1",
            "tenant_id": "tenant-a",
            "scene_index": 0,
            "task_uuid": "9d1c",
            "token": "k",
            "lease_until": datetime(2026, 11, 24, tzinfo=UTC),
            "model": "google:3@3",
            "request": {"prompt": "a fox", "duration": 4},
        }
        | fields
    )


_QUEUED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _reads(message: SubmitClip, *, after_s: float, first_handling: bool = True) -> bool:
    return reads_before_submit(
        message,
        now=_QUEUED + timedelta(seconds=after_s),
        read_after_s=10,
        may_have_submitted=may_have_submitted(message, first_handling=first_handling),
    )


def test_only_a_clips_prompt_first_submit_reads_nothing_before_it() -> None:
    assert not _reads(_submit(queued_at=_QUEUED), after_s=3)
    # The clip may have been cancelled while the chain waited out an outage or a refusal.
    assert _reads(_submit(attempt=2, outages=1, queued_at=_QUEUED), after_s=3)
    assert _reads(_submit(attempt=2, queued_at=_QUEUED), after_s=3)
    # A retry's task: an earlier task's late video may replace it before it is submitted.
    assert _reads(_submit(after_earlier_tasks=True, queued_at=_QUEUED), after_s=3)


def test_a_first_submit_handled_before_reads_the_clip_however_young() -> None:
    # A redelivery or a copy retried after a failure: its first handling may have failed the
    # clip, and the tenant retried it (a new task bought): sent unread, it would be bought too.
    assert _reads(_submit(queued_at=_QUEUED), after_s=3, first_handling=False)
    # A chain the reconciler re-armed (its lost predecessor may have submitted).
    assert _reads(_submit(queued_at=_QUEUED, last_ambiguous_at=_QUEUED), after_s=3)


def test_a_first_submit_that_waited_in_its_lane_reads_the_clip() -> None:
    # Minutes in a fair-share lane: the clip may have been cancelled meanwhile.
    assert _reads(_submit(queued_at=_QUEUED), after_s=10.5)
    assert not _reads(_submit(queued_at=_QUEUED), after_s=10)
    # A message from before ``queued_at``: its own timestamp stands in.
    assert _reads(_submit(occurred_at=_QUEUED), after_s=60)
    assert not _reads(_submit(occurred_at=_QUEUED), after_s=1)


@pytest.mark.parametrize(
    ("clip", "then"),
    [
        (("9d1c", ClipStatus.QUEUED), BeforeSubmit.SUBMIT),
        (("9d1c", ClipStatus.CANCELLED), BeforeSubmit.ASK_GIVEN_UP),
        (("9d1c", ClipStatus.FAILED), BeforeSubmit.ASK_GIVEN_UP),
        (("9d1c", ClipStatus.PROCESSING), BeforeSubmit.DROP),  # another chain follows it
        (("9d1c", ClipStatus.SUCCESS), BeforeSubmit.DROP),  # its video is recorded
        (("e2f0", ClipStatus.SUCCESS), BeforeSubmit.ASK_REPLACED),  # an earlier task's video
        (("e2f0", ClipStatus.QUEUED), BeforeSubmit.ASK_REPLACED),
        (None, BeforeSubmit.DROP),  # the project is gone
    ],
)
def test_a_submit_goes_to_runware_only_while_its_task_is_the_clips_and_queued(
    clip: tuple[str, ClipStatus] | None, then: BeforeSubmit
) -> None:
    assert before_resubmit("9d1c", clip, may_have_submitted=True) is then


@pytest.mark.parametrize(
    ("fields", "first_handling", "then"),
    [
        # The chain's first submit, handled once: nothing of it can be at Runware.
        ({}, True, BeforeSubmit.NEVER_SUBMITTED),
        # Redelivered, or retried after a failure: its holder may have submitted it.
        ({}, False, BeforeSubmit.ASK_GIVEN_UP),
        # An earlier submit went unanswered (or a re-armed chain's predecessor's may have).
        ({"last_ambiguous_at": _QUEUED}, True, BeforeSubmit.ASK_GIVEN_UP),
        # A later submit: an earlier one may have reached Runware.
        ({"attempt": 2}, True, BeforeSubmit.ASK_GIVEN_UP),
        ({"attempt": 2, "outages": 1}, True, BeforeSubmit.ASK_GIVEN_UP),
    ],
)
@pytest.mark.parametrize("status", [ClipStatus.CANCELLED, ClipStatus.FAILED])
def test_a_given_up_clips_chain_asks_runware_only_if_an_earlier_try_may_have_submitted(
    fields: dict[str, Any], first_handling: bool, then: BeforeSubmit, status: ClipStatus
) -> None:
    message = _submit(**fields)
    submitted = may_have_submitted(message, first_handling=first_handling)
    assert before_resubmit("9d1c", ("9d1c", status), may_have_submitted=submitted) is then


def test_video_request_carries_the_clips_task_uuid_and_fields() -> None:
    T0 = datetime(2026, 11, 24, tzinfo=UTC)
    message = SubmitClip(
        project_id="p1",
        tenant_id="tenant-a",
        scene_index=0,
        task_uuid="9d1c",
        token="k",
        lease_until=T0,
        model="google:3@3",
        request=ClipRequest(
            prompt="a fox",
            negative_prompt="blur",
            duration=4,
            width=1280,
            height=720,
            seed=7,
            fps=24,
        ),
    )
    request = video_request(message, webhook_url="https://reelflow.example/v1/webhooks/runware/s")
    assert request.model_dump() == {
        "task_uuid": "9d1c",
        "model": "google:3@3",
        "positive_prompt": "a fox",
        "duration": 4,
        "width": 1280,
        "height": 720,
        "negative_prompt": "blur",
        "seed": 7,
        "fps": 24,
        "webhook_url": "https://reelflow.example/v1/webhooks/runware/s",
    }


def test_runware_may_hold_a_task_after_a_retryable_answer_or_an_earlier_unseen_submit() -> None:
    refused = RunwareRequestError("bad", code="invalidPrompt", http_status=400)
    lost = RunwareTransportError("no answer", code="timeout")

    assert not may_hold_task(refused, may_have_submitted=False)
    assert may_hold_task(refused, may_have_submitted=True)
    assert may_hold_task(lost, may_have_submitted=False)


T_FIRST = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_an_unknown_task_is_waited_for_until_the_grace_from_the_first_submit_is_over() -> None:
    def decide(waited_s: float) -> NotVisibleYet | None:
        return after_not_found(
            now=T_FIRST + timedelta(seconds=waited_s),
            since=T_FIRST,
            grace_s=120,
            backoff=Backoff(first_s=2, cap_s=30),
        )

    assert decide(0) == NotVisibleYet(30)
    assert decide(110) == NotVisibleYet(10)
    assert decide(119.5) == NotVisibleYet(2)
    assert decide(120) is None
