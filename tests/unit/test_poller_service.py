"""The poller's decisions: what Runware's answer about a task means for its clip.

One function serves the poll chains, the webhook hints and the reconciler; every
way of not knowing ends at the same ceiling, with the last error shown.
"""

from __future__ import annotations

import dataclasses

import pytest

from reelflow_common.backoff import Backoff
from reelflow_common.runware import (
    ErrorCategory,
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
    TaskFailure,
    TaskState,
)
from reelflow_common.store import TaskFailed, TaskSucceeded
from reelflow_common.tracking.policy import (
    TIMED_OUT,
    Keep,
    Policy,
    Record,
    Watch,
    progress_to_store,
    terminal_result,
)

#: the late follow's checks at the settings' defaults: poll_max_delay_s, doubling to 30 min
LATE_CHECKS = Backoff(first_s=300.0, cap_s=1800.0)
POLICY = Policy(max_age_s=7200, not_found_grace_s=120, late_follow_s=0, late_checks=LATE_CHECKS)
TASK = "24cd5dff-0000-4000-8000-000000000000"


def watch(since_submit_s: float = 60, watched_s: float | None = None, **kw: object) -> Watch:
    watched = since_submit_s if watched_s is None else watched_s
    return Watch(since_submit_s=since_submit_s, watched_s=watched, **kw)  # type: ignore[arg-type]


def _processing(progress: int | None = None) -> TaskState:
    return TaskState(task_uuid=TASK, status="processing", progress=progress)


def _failed(code: str | None, message: str = "it broke") -> TaskState:
    return TaskState(task_uuid=TASK, status="error", error=TaskFailure(code=code, message=message))


def test_success_is_recorded_with_the_video_and_cost() -> None:
    state = TaskState(
        task_uuid=TASK,
        status="success",
        video_uuid="b7db",
        video_url="https://im.runware.ai/video/b7db.mp4",
        cost=0.18,
        seed=42,
    )
    assert POLICY.decide(state, watch(95)) == Record(
        TaskSucceeded(
            video_url="https://im.runware.ai/video/b7db.mp4", video_uuid="b7db", cost=0.18
        )
    )


def test_success_is_recorded_even_past_the_ceiling() -> None:
    state = TaskState(task_uuid=TASK, status="success", video_url="https://x/v.mp4")
    assert POLICY.decide(state, watch(10_000)) == Record(TaskSucceeded(video_url="https://x/v.mp4"))


@pytest.mark.parametrize(
    "code", ["timeoutProvider", "contentPolicyViolation", "taskFailed", "somethingNew"]
)
def test_task_error_fails_the_clip_with_runwares_code_and_message(code: str) -> None:
    decision = POLICY.decide(_failed(code, "provider gave up"), watch(60))
    assert decision == Record(TaskFailed(code=code, message="provider gave up"))


def test_task_error_without_details_fails_as_task_failed() -> None:
    state = TaskState(task_uuid=TASK, status="error")
    assert POLICY.decide(state, watch(30)) == Record(
        TaskFailed(code="taskFailed", message="Runware reported an error.")
    )


def test_still_processing_keeps_watching_with_its_progress() -> None:
    assert POLICY.decide(_processing(40), watch(20)) == Keep(progress=40)


def test_still_processing_at_the_ceiling_times_out() -> None:
    decision = POLICY.decide(_processing(), watch(7300, watched_s=7200))
    assert isinstance(decision, Record)
    assert isinstance(decision.result, TaskFailed)
    assert decision.result.code == TIMED_OUT == "timedOut"
    assert "7200 s" in decision.result.message


def test_just_below_the_ceiling_keeps_watching() -> None:
    assert isinstance(POLICY.decide(_processing(), watch(7199.9)), Keep)


def test_the_ceiling_counts_from_the_watch_not_the_submit() -> None:
    # A timed-out clip watched again gets a fresh ceiling.
    assert isinstance(POLICY.decide(_processing(), watch(9000, watched_s=60)), Keep)


def _not_found(task_uuid: str | None = TASK) -> RunwareError:
    return RunwareTaskError(
        "The task was not found, or it failed and is no longer available.",
        code="taskFailedOrNotFound",
        http_status=400,
        task_uuid=task_uuid,
    )


def test_unknown_task_soon_after_submit_is_taken_as_not_visible_yet() -> None:
    decision = POLICY.decide(_not_found(), watch(20))
    assert isinstance(decision, Keep)
    assert decision.last_error is not None
    assert "taskFailedOrNotFound" in decision.last_error


def test_unknown_task_after_the_grace_fails_with_runwares_code() -> None:
    decision = POLICY.decide(_not_found(), watch(120))
    assert decision == Record(
        TaskFailed(
            code="taskFailedOrNotFound",
            message="The task was not found, or it failed and is no longer available.",
        )
    )


def test_unknown_task_reported_as_an_error_item_follows_the_same_grace() -> None:
    state = _failed("taskExpired", "gone")
    assert isinstance(POLICY.decide(state, watch(10)), Keep)
    assert POLICY.decide(state, watch(500)) == Record(
        TaskFailed(code="taskExpired", message="gone")
    )


@pytest.mark.parametrize(
    "error",
    [
        _not_found(task_uuid=None),
        RunwareRequestError(
            "Runware answered HTTP 404 without an error entry",
            code="invalidResponse",
            category=ErrorCategory.SERVER_ERROR,
            http_status=404,
            task_uuid=TASK,
        ),
        RunwareRequestError("not found", code="taskNotFound", http_status=404, task_uuid=TASK),
    ],
    ids=["no-task-named", "bare-404", "request-level-not-found"],
)
def test_only_runwares_own_not_found_for_the_task_fails_a_clip(error: RunwareError) -> None:
    decision = POLICY.decide(error, watch(500))
    assert isinstance(decision, Keep)


@pytest.mark.parametrize(
    "error",
    [
        RunwareTransportError(
            "no answer from Runware: ConnectTimeout", code="timeout", category=ErrorCategory.TIMEOUT
        ),
        RunwareRequestError("capacity", code="serviceUnavailable", http_status=503),
        RunwareRequestError("slow down", code="rateLimitExceeded", http_status=429),
        RunwareRequestError("bad key", code="invalidApiKey", http_status=401, task_uuid=TASK),
        RunwareRequestError("purged", code="invalidTaskUUID", http_status=400, task_uuid=TASK),
        RunwareRequestError("pay", code="insufficientCredits", http_status=402, task_uuid=TASK),
    ],
    ids=["transport", "503", "429", "401-after-key-rotation", "400-after-purge", "quota"],
)
def test_when_runware_cannot_say_the_clip_is_watched_until_the_ceiling(
    error: RunwareError,
) -> None:
    before = POLICY.decide(error, watch(4000))
    at_ceiling = POLICY.decide(error, watch(7200))

    assert before == Keep(last_error=str(error))
    assert isinstance(at_ceiling, Record)
    assert isinstance(at_ceiling.result, TaskFailed)
    assert at_ceiling.result.code == TIMED_OUT
    assert str(error) in at_ceiling.result.message  # the last error is shown


def test_a_success_without_a_video_url_is_watched_until_the_ceiling() -> None:
    state = TaskState(task_uuid=TASK, status="success")

    assert isinstance(POLICY.decide(state, watch(10)), Keep)
    timed_out = POLICY.decide(state, watch(7200))
    assert isinstance(timed_out, Record)
    assert "without a video URL" in timed_out.result.message  # type: ignore[union-attr]


def test_the_last_error_of_an_earlier_check_is_shown_at_the_ceiling() -> None:
    decision = POLICY.decide(_processing(), watch(7200, last_error="invalidApiKey HTTP 401"))

    assert isinstance(decision, Record)
    assert "invalidApiKey HTTP 401" in decision.result.message  # type: ignore[union-attr]


def test_only_ends_are_terminal_results() -> None:
    assert terminal_result(_processing()) is None
    assert terminal_result(TaskState(task_uuid=TASK, status="success")) is None
    assert terminal_result(_failed("taskFailedOrNotFound")) is None
    assert terminal_result(_failed("x")) == TaskFailed(code="x", message="it broke")


@pytest.mark.parametrize(
    ("progress", "seen_before", "step", "stored"),
    [
        (30, None, 25, 30),  # the first step passed
        (20, None, 25, None),  # not yet a step
        (49, 30, 25, None),  # the same step as last seen
        (51, 49, 25, 51),  # the next one
        (99, 70, 25, 99),  # where a task may sit: shown all the same
        (None, 30, 25, None),  # Runware said nothing
        (0, None, 25, None),
        (60, None, 0, None),  # storing is off
        (40, 60, 25, None),  # gone back
    ],
)
def test_progress_is_stored_once_per_step(
    progress: int | None, seen_before: int | None, step: int, stored: int | None
) -> None:
    assert progress_to_store(progress, seen_before=seen_before, step=step) == stored


def test_the_ceiling_is_followed_late_and_a_late_follow_ends_at_its_own_end() -> None:
    late = dataclasses.replace(POLICY, late_follow_s=86_400)

    # The clip's ceiling: recorded (timedOut), its task followed on for the late follow.
    decision = late.decide(_processing(), watch(7200))
    assert isinstance(decision, Record)
    assert decision.result.code == TIMED_OUT  # type: ignore[union-attr]
    assert decision.late_follow_s == 86_400
    assert POLICY.decide(_processing(), watch(7200)) == Record(  # no late follow
        POLICY.timed_out(watch(7200), None)
    )
    # A late follow keeps going past the clip's ceiling, up to its own end, its last word.
    following = watch(10_000, ceiling_s=90_000)
    assert late.decide(_processing(), following) == Keep(progress=None)
    ended = late.decide(_processing(), watch(90_000, ceiling_s=90_000))
    assert isinstance(ended, Record)
    assert ended.late_follow_s == 0
    assert "late follow is over" in ended.result.message  # type: ignore[union-attr]
    # Runware's own word ends it at once: a video, a failure, not found.
    assert isinstance(late.decide(_failed("taskFailedOrNotFound"), following), Record)


def test_a_late_follows_checks_grow_to_their_cap_and_never_pass_its_end() -> None:
    late = dataclasses.replace(POLICY, late_follow_s=86_400)

    assert [late.late_check_s(n, left_s=86_400) for n in range(5)] == [300, 600, 1200, 1800, 1800]
    assert late.late_check_s(3, left_s=42.0) == 42.0
    assert late.late_check_s(3, left_s=-1.0) == 0.0
