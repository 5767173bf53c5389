"""Submitting video tasks: acks, duplicates, refusals and lost answers; several in a request."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from reelflow_common.runware import (
    ErrorCategory,
    RunwareClient,
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
    SubmitResult,
    is_task_not_found,
)
from reelflow_common.settings import RunwareSettings
from tests.runware.helpers import (
    answering,
    client_settings,
    refusing_url,
    sim_and_client,
    video,
)

BAD_KEY = "rw-not-a-real-key-5f1e2d"


async def test_submit_is_acknowledged_and_the_simulator_holds_the_task() -> None:
    async with sim_and_client() as (sim, client):
        request = video()

        result = await client.submit_video(request)

        assert result.task_uuid == request.task_uuid
        assert not result.already_submitted
        truth = await sim.task(request.task_uuid)
        assert truth["accepted"]
        assert truth["submissions"] == 1


async def test_resubmitting_the_same_task_reports_already_submitted_and_bills_once() -> None:
    async with sim_and_client() as (sim, client):
        request = video()
        await client.submit_video(request)

        again = await client.submit_video(request)

        assert again.already_submitted
        truth = await sim.task(request.task_uuid)
        assert truth["submissions"] == 2
        assert (await sim.stats())["billed_cost"] == truth["cost"]


async def test_unsupported_duration_is_a_task_error_that_names_the_parameter() -> None:
    async with sim_and_client() as (_sim, client):
        request = video(duration=5)

        with pytest.raises(RunwareTaskError) as caught:
            await client.submit_video(request)

        error = caught.value
        assert error.code == "unsupportedDuration"
        assert error.category is ErrorCategory.VALIDATION
        assert not error.retryable
        assert error.task_uuid == request.task_uuid
        assert error.parameter == "duration"
        assert error.allowed_values == (4, 6, 7, 8)


async def test_a_bad_api_key_is_an_auth_error_that_does_not_leak_the_key() -> None:
    async with sim_and_client(api_key=BAD_KEY) as (_sim, client):
        with capture_logs() as logs, pytest.raises(RunwareRequestError) as caught:
            await client.submit_video(video())

    error = caught.value
    assert error.code == "invalidApiKey"
    assert error.category is ErrorCategory.AUTH
    assert error.http_status == 401
    assert not error.retryable
    assert BAD_KEY not in f"{error} {error!r} {logs}"


@pytest.mark.parametrize(
    ("fault", "status"), [("rate_429", 429), ("rate_503", 503), ("rate_504", 504)]
)
async def test_capacity_answers_are_retryable_request_errors(fault: str, status: int) -> None:
    faults: dict[str, Any] = {fault: 1.0}
    async with sim_and_client(**faults) as (sim, client):
        request = video()

        with pytest.raises(RunwareRequestError) as caught:
            await client.submit_video(request)

        assert caught.value.http_status == status
        assert caught.value.retryable
        assert request.task_uuid not in {task["task_uuid"] for task in await sim.tasks()}


async def test_a_lost_answer_is_retryable_and_a_resubmit_finds_the_task_billed_once() -> None:
    async with sim_and_client() as (sim, client):
        request = video("a lighthouse at dusk [sim:drop]")

        with pytest.raises(RunwareTransportError) as caught:
            await client.submit_video(request)
        assert caught.value.retryable
        assert (await sim.task(request.task_uuid))["accepted"]

        again = await client.submit_video(request)

        assert again.already_submitted
        truth = await sim.task(request.task_uuid)
        assert truth["submissions"] == 2
        assert (await sim.stats())["billed_cost"] == truth["cost"]


async def test_no_server_is_a_retryable_transport_error_without_the_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is closed again: nothing listens there.
    settings = RunwareSettings(
        runware_base_url=f"http://127.0.0.1:{port}", runware_api_key=SecretStr(BAD_KEY)
    )
    async with RunwareClient.open(settings) as client:
        with pytest.raises(RunwareTransportError) as caught:
            await client.submit_video(video())

    assert caught.value.category is ErrorCategory.CONNECTION
    assert caught.value.retryable
    assert BAD_KEY not in f"{caught.value} {caught.value!r}"


async def test_each_call_logs_one_line_with_task_status_and_duration() -> None:
    async with sim_and_client() as (sim, client):
        request = video()
        with capture_logs() as logs:
            await client.submit_video(request)

    assert [line["event"] for line in logs] == ["runware_call_finished"]
    line = logs[0]
    assert line["task_uuid"] == request.task_uuid
    assert line["status_code"] == 200
    assert isinstance(line["duration_ms"], int)
    assert sim.api_key not in str(logs)


# --- several tasks in one request -------------------------------------------------------


async def test_tasks_submitted_together_go_in_one_request_each_with_its_own_outcome() -> None:
    async with sim_and_client() as (sim, client):
        good, bad, known = video(), video(duration=5), video()
        await client.submit_video(known)
        before = (await sim.stats())["requests"]

        outcomes = await client.submit_videos([good, bad, known])

        assert (await sim.stats())["requests"] - before == 1
        accepted, refused, again = (outcomes[r.task_uuid] for r in (good, bad, known))
        assert isinstance(accepted, SubmitResult)
        assert not accepted.already_submitted
        assert (await sim.task(good.task_uuid))["accepted"]
        assert isinstance(refused, RunwareTaskError)
        assert refused.code == "unsupportedDuration"
        assert not refused.retryable
        assert isinstance(again, SubmitResult)
        assert again.already_submitted
        assert {task["task_uuid"] for task in await sim.tasks()} == {
            good.task_uuid,
            known.task_uuid,
        }


async def test_a_task_twice_in_one_request_is_sent_once() -> None:
    async with sim_and_client() as (sim, client):
        request = video()

        outcomes = await client.submit_videos([request, request])

        assert list(outcomes) == [request.task_uuid]
        assert (await sim.task(request.task_uuid))["submissions"] == 1


async def test_a_capacity_answer_to_a_shared_request_is_retryable_for_every_task_in_it() -> None:
    async with sim_and_client(rate_429=1.0) as (sim, client):
        requests = [video() for _ in range(3)]

        outcomes = await client.submit_videos(requests)

        for request in requests:
            outcome = outcomes[request.task_uuid]
            assert isinstance(outcome, RunwareRequestError)
            assert (outcome.http_status, outcome.retryable) == (429, True)
            assert outcome.task_uuid == request.task_uuid
        assert await sim.tasks() == []


def _refusal(task_uuid: str) -> dict[str, Any]:
    return {"code": "invalidPositivePrompt", "message": "no", "taskUUID": task_uuid}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # another task refused, the request's status with it: says nothing of this one
        (400, lambda other, _: {"errors": [_refusal(other)]}),
        # an ack of another task only
        (200, lambda other, _: {"data": [{"taskType": "videoInference", "taskUUID": other}]}),
    ],
    ids=["refused-status-of-another", "ack-of-another-only"],
)
async def test_a_task_a_shared_answer_does_not_mention_is_submitted_again_never_failed(
    status: int, body: Any
) -> None:
    other, unmentioned = video(), video()
    content = json.dumps(body(other.task_uuid, unmentioned.task_uuid)).encode()
    async with (
        answering(status, content, "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        outcomes = await client.submit_videos([other, unmentioned])

    outcome = outcomes[unmentioned.task_uuid]
    assert isinstance(outcome, RunwareTaskError)
    assert outcome.retryable
    assert outcome.task_uuid == unmentioned.task_uuid
    assert not is_task_not_found(outcome)


async def test_an_acknowledged_task_is_taken_whatever_unscoped_error_comes_beside_it() -> None:
    taken, other = video(), video()
    body = {
        "data": [{"taskType": "videoInference", "taskUUID": taken.task_uuid}],
        "errors": [{"code": "insufficientCredits", "message": "no more credit"}],
    }
    async with (
        answering(402, json.dumps(body).encode(), "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        outcomes = await client.submit_videos([taken, other])

    # Alone, the same answer would have failed it at once: Runware bills it all the same.
    assert outcomes[taken.task_uuid] == SubmitResult(task_uuid=taken.task_uuid)
    unsettled = outcomes[other.task_uuid]
    assert isinstance(unsettled, RunwareError)
    assert unsettled.retryable


async def test_a_conflict_that_names_no_task_marks_no_task_of_a_shared_request_submitted() -> None:
    requests = [video(), video()]
    body = {"errors": [{"code": "conflictTaskUUID", "message": "exists"}]}
    async with (
        answering(400, json.dumps(body).encode(), "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        outcomes = await client.submit_videos(requests)

    for request in requests:
        outcome = outcomes[request.task_uuid]
        assert isinstance(outcome, RunwareError)
        assert outcome.retryable  # a retry goes alone, where a conflict is clear


async def test_an_error_that_names_no_task_fails_no_task_of_a_shared_request() -> None:
    requests = [video(), video()]
    async with sim_and_client(api_key=BAD_KEY) as (_sim, client):
        shared = await client.submit_videos(requests)
        alone = await client.submit_videos(requests[:1])

    # Whose is it? Each task is submitted again alone, where the answer is its own.
    for request in requests:
        outcome = shared[request.task_uuid]
        assert isinstance(outcome, RunwareError)
        assert outcome.retryable
        assert outcome.task_uuid == request.task_uuid
    refused = alone[requests[0].task_uuid]
    assert isinstance(refused, RunwareRequestError)
    assert (refused.code, refused.http_status, refused.retryable) == ("invalidApiKey", 401, False)


async def test_no_answer_to_a_shared_request_is_each_tasks_own_retryable_error() -> None:
    requests = [video(), video()]
    async with RunwareClient.open(client_settings(refusing_url(), "key")) as client:
        outcomes = await client.submit_videos(requests)

    errors = [outcomes[request.task_uuid] for request in requests]
    assert all(isinstance(e, RunwareTransportError) and e.retryable for e in errors)
    assert [e.task_uuid for e in errors] == [r.task_uuid for r in requests]
    assert errors[0] is not errors[1]  # each caller raises its own


async def test_a_conflict_in_a_data_item_is_already_submitted_never_a_refusal() -> None:
    request = video()
    item = {
        "taskType": "videoInference",
        "taskUUID": request.task_uuid,
        "status": "error",
        "error": {"code": "conflictTaskUUID", "message": "exists"},
    }
    async with (
        answering(400, json.dumps({"data": [item]}).encode(), "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        result = await client.submit_video(request)

    assert result == SubmitResult(task_uuid=request.task_uuid, already_submitted=True)


async def test_a_task_alone_with_an_empty_ack_is_accepted_as_before() -> None:
    request = video()
    async with (
        answering(200, b'{"data": []}', "application/json") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        result = await client.submit_video(request)

    assert result == SubmitResult(task_uuid=request.task_uuid)


# --- what each answer logs ----------------------------------------------------------------


async def test_a_resubmit_answered_with_a_conflict_is_logged_as_such_never_as_failed() -> None:
    async with sim_and_client() as (_sim, client):
        request = video()
        await client.submit_video(request)
        with capture_logs() as logs:
            again = await client.submit_video(request)

    assert again.already_submitted
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("runware_task_already_submitted", "info")
    ]
    assert logs[0]["task_uuid"] == request.task_uuid


@pytest.mark.parametrize("task_type", ["videoInference", "getResponse"])
async def test_a_refused_call_of_any_task_type_is_a_warning_with_runwares_code(
    task_type: str,
) -> None:
    async with sim_and_client(api_key=BAD_KEY) as (_sim, client):
        request = video()
        with capture_logs() as logs:
            if task_type == "videoInference":
                await client.submit_videos([request])
            else:
                await client.get_responses([request.task_uuid])

    (line,) = logs
    assert (line["event"], line["log_level"], line["task_type"]) == (
        "runware_call_failed",
        "warning",
        task_type,
    )
    assert (line["status_code"], line["error_code"]) == (401, "invalidApiKey")
    assert isinstance(line["duration_ms"], int)
    assert BAD_KEY not in str(logs)


async def test_an_outage_answer_without_an_error_entry_is_a_warning_too() -> None:
    async with (
        answering(502, b"<html>bad gateway</html>", "text/html") as url,
        RunwareClient.open(client_settings(url, "key")) as client,
    ):
        with capture_logs() as logs:
            await client.get_responses([video().task_uuid])

    (line,) = logs
    assert (line["event"], line["log_level"], line["status_code"]) == (
        "runware_call_failed",
        "warning",
        502,
    )
    assert "error_code" not in line
