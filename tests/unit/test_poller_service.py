"""The poller's decisions: what a task state or a failed poll means for the clip."""

from __future__ import annotations

import pytest

from reelflow_common.runware import (
    ErrorCategory,
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
    TaskFailure,
    TaskState,
)
from reelflow_poller.service import (
    TIMED_OUT,
    CheckAgain,
    Failed,
    Policy,
    Succeeded,
    next_check_delay_s,
)

POLICY = Policy(initial_s=20, backoff=1.5, cap_s=120, max_age_s=7200, not_found_grace_s=120)
TASK = "24cd5dff-0000-4000-8000-000000000000"


def _processing() -> TaskState:
    return TaskState(task_uuid=TASK, status="processing")


def _failed(code: str | None, message: str = "it broke") -> TaskState:
    return TaskState(task_uuid=TASK, status="error", error=TaskFailure(code=code, message=message))


def test_success_is_recorded_with_everything_runware_said() -> None:
    state = TaskState(
        task_uuid=TASK,
        status="success",
        video_uuid="b7db",
        video_url="https://im.runware.ai/video/b7db.mp4",
        cost=0.18,
        seed=42,
    )
    assert POLICY.after_state(state, attempt=3, age_s=95) == Succeeded(state)


def test_success_is_recorded_even_past_the_maximum_age() -> None:
    state = TaskState(task_uuid=TASK, status="success", video_url="https://x/v.mp4")
    assert POLICY.after_state(state, attempt=99, age_s=10_000) == Succeeded(state)


@pytest.mark.parametrize(
    "code", ["timeoutProvider", "contentPolicyViolation", "taskFailed", "somethingNew"]
)
def test_task_error_fails_the_clip_with_runwares_code_and_message(code: str) -> None:
    decision = POLICY.after_state(_failed(code, "provider gave up"), attempt=2, age_s=60)
    assert decision == Failed(code, "provider gave up")


def test_task_error_without_details_fails_as_task_failed() -> None:
    state = TaskState(task_uuid=TASK, status="error")
    assert POLICY.after_state(state, attempt=1, age_s=30) == Failed(
        "taskFailed", "Runware reported an error."
    )


def test_still_processing_checks_again_after_the_next_delay() -> None:
    assert POLICY.after_state(_processing(), attempt=1, age_s=20) == CheckAgain(30.0)
    assert POLICY.after_state(_processing(), attempt=2, age_s=50) == CheckAgain(45.0)


def test_still_processing_past_the_maximum_age_times_out() -> None:
    decision = POLICY.after_state(_processing(), attempt=70, age_s=7200)
    assert isinstance(decision, Failed)
    assert decision.code == TIMED_OUT == "timedOut"
    assert "7200 s" in decision.message


def test_just_below_the_maximum_age_still_checks_again() -> None:
    assert isinstance(POLICY.after_state(_processing(), attempt=70, age_s=7199.9), CheckAgain)


def _not_found(task_uuid: str | None = TASK) -> RunwareError:
    return RunwareTaskError(
        "The task was not found, or it failed and is no longer available.",
        code="taskFailedOrNotFound",
        http_status=400,
        task_uuid=task_uuid,
    )


def test_unknown_task_soon_after_submit_is_taken_as_not_visible_yet() -> None:
    assert POLICY.after_error(_not_found(), attempt=1, age_s=20) == CheckAgain(30.0)


def test_unknown_task_after_the_grace_fails_with_runwares_code() -> None:
    decision = POLICY.after_error(_not_found(), attempt=5, age_s=120)
    assert decision == Failed(
        "taskFailedOrNotFound", "The task was not found, or it failed and is no longer available."
    )


def test_unknown_task_reported_as_an_error_item_follows_the_same_grace() -> None:
    state = _failed("taskExpired", "gone")
    assert isinstance(POLICY.after_state(state, attempt=1, age_s=10), CheckAgain)
    assert POLICY.after_state(state, attempt=9, age_s=500) == Failed("taskExpired", "gone")


def test_a_not_found_without_a_task_is_about_the_request_and_checks_again() -> None:
    decision = POLICY.after_error(_not_found(task_uuid=None), attempt=5, age_s=500)
    assert isinstance(decision, CheckAgain)


@pytest.mark.parametrize(
    "error",
    [
        RunwareTransportError(
            "no answer from Runware: ConnectTimeout", code="timeout", category=ErrorCategory.TIMEOUT
        ),
        RunwareRequestError("capacity", code="serviceUnavailable", http_status=503),
        RunwareRequestError("slow down", code="rateLimitExceeded", http_status=429),
        RunwareRequestError("bad key", code="invalidApiKey", http_status=401, task_uuid=TASK),
        RunwareRequestError("pay", code="insufficientCredits", http_status=402, task_uuid=TASK),
    ],
    ids=["transport", "503", "429", "auth", "quota"],
)
def test_when_runware_cannot_say_the_clip_is_kept_tracking(error: RunwareError) -> None:
    assert POLICY.after_error(error, attempt=5, age_s=4000) == CheckAgain(120.0)


def test_when_runware_cannot_say_past_the_maximum_age_the_clip_is_checked_again() -> None:
    # The task may have finished (and be billed): only Runware's "processing" times it out.
    error = RunwareTransportError(
        "no answer", code="connectionError", category=ErrorCategory.CONNECTION
    )
    decision = POLICY.after_error(error, attempt=80, age_s=8000)
    assert isinstance(decision, CheckAgain)


def test_a_success_without_a_video_url_is_checked_again() -> None:
    state = TaskState(task_uuid="t", status="success")
    assert isinstance(POLICY.after_state(state, attempt=1, age_s=10), CheckAgain)


@pytest.mark.parametrize(
    ("attempt", "delay"), [(0, 20.0), (1, 30.0), (2, 45.0), (3, 67.5), (4, 101.25), (5, 120.0)]
)
def test_check_delay_grows_by_the_backoff_and_is_capped(attempt: int, delay: float) -> None:
    assert next_check_delay_s(attempt, initial_s=20, backoff=1.5, cap_s=120) == delay


def test_check_delay_for_a_huge_attempt_is_the_cap_not_an_overflow() -> None:
    assert next_check_delay_s(10_000, initial_s=20, backoff=1.5, cap_s=120) == 120.0
