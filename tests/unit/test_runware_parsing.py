"""Every documented Runware body shape (docs/RUNWARE.md §2.4, §3.2, §10) parses as expected."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reelflow_common.runware import TaskFailure, TaskState, VideoRequest, parse_task_states
from reelflow_common.runware.parsing import (
    build_poll_task,
    build_video_task,
    error_entries,
    request_level_errors,
)

UUID = "6f1c2b9e-3d4a-4c1e-9a7b-2f8e5d0c1a34"
OTHER = "24cd5dff-cb81-4db5-8506-b72a9425f9d1"
VIDEO_URL = "https://im.runware.ai/video/ws/0.5/vi/b7db282d-2943-4f12-992f-77df3ad3ec71.mp4"


def test_video_task_sends_the_fixed_async_fields_and_only_the_fields_that_are_set() -> None:
    request = VideoRequest(
        task_uuid=UUID,
        model="google:3@3",
        positive_prompt="Slow aerial shot over a misty pine forest",
        duration=8,
        width=1280,
        height=720,
    )

    assert build_video_task(request) == {
        "taskType": "videoInference",
        "taskUUID": UUID,
        "deliveryMethod": "async",
        "includeCost": True,
        "outputType": "URL",
        "outputFormat": "MP4",
        "numberResults": 1,
        "model": "google:3@3",
        "positivePrompt": "Slow aerial shot over a misty pine forest",
        "duration": 8,
        "width": 1280,
        "height": 720,
    }


def test_video_task_maps_every_optional_field_to_runware_names() -> None:
    request = VideoRequest(
        task_uuid=UUID,
        model="klingai:5@3",
        positive_prompt="a cat",
        negative_prompt="blur",
        seed=7,
        fps=24,
        webhook_url="https://hooks.example/runware?token=t",
    )

    task = build_video_task(request)

    assert task["negativePrompt"] == "blur"
    assert task["seed"] == 7
    assert task["fps"] == 24
    assert task["webhookURL"] == "https://hooks.example/runware?token=t"
    assert "duration" not in task
    assert "width" not in task


def test_video_request_is_frozen_and_rejects_unknown_fields() -> None:
    request = VideoRequest(task_uuid=UUID, model="m:1@1", positive_prompt="p")

    with pytest.raises(ValueError, match="frozen"):
        request.seed = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="extra"):
        VideoRequest(task_uuid=UUID, model="m:1@1", positive_prompt="p", steps=4)  # type: ignore[call-arg]


def test_poll_task_uses_the_original_task_uuid() -> None:
    assert build_poll_task(UUID) == {"taskType": "getResponse", "taskUUID": UUID}


def test_ack_without_status_reads_as_processing() -> None:
    body = {"data": [{"taskType": "videoInference", "taskUUID": UUID}]}

    assert parse_task_states(body) == {UUID: TaskState(task_uuid=UUID, status="processing")}


def test_empty_ack_mentions_no_task() -> None:
    assert parse_task_states({"data": []}) == {}


def test_processing_with_progress() -> None:
    body = {
        "data": [
            {"taskType": "videoInference", "taskUUID": UUID, "status": "processing", "progress": 40}
        ]
    }

    assert parse_task_states(body)[UUID] == TaskState(
        task_uuid=UUID, status="processing", progress=40
    )


@pytest.mark.parametrize("status", ["pending", "queued", "scheduled", "waiting", "somethingNew"])
def test_unfinished_status_words_read_as_processing(status: str) -> None:
    body = {"data": [{"taskType": "getResponse", "taskUUID": UUID, "status": status}]}

    assert parse_task_states(body)[UUID].status == "processing"


def test_success_carries_video_seed_and_cost() -> None:
    body = {
        "data": [
            {
                "taskType": "videoInference",
                "taskUUID": UUID,
                "status": "success",
                "videoUUID": "b7db282d-2943-4f12-992f-77df3ad3ec71",
                "videoURL": VIDEO_URL,
                "seed": 1837465521,
                "cost": 1.2,
                "NSFWContent": False,
                "somethingRunwareAddsLater": {"x": 1},
            }
        ]
    }

    assert parse_task_states(body)[UUID] == TaskState(
        task_uuid=UUID,
        status="success",
        video_uuid="b7db282d-2943-4f12-992f-77df3ad3ec71",
        video_url=VIDEO_URL,
        seed=1837465521,
        cost=1.2,
    )


def test_an_item_with_a_video_url_counts_as_success_even_without_status() -> None:
    webhook_body = {
        "data": [{"taskType": "videoInference", "taskUUID": UUID, "videoURL": VIDEO_URL}]
    }

    state = parse_task_states(webhook_body)[UUID]

    assert state.status == "success"
    assert state.video_url == VIDEO_URL


def test_media_fields_stand_in_for_video_fields() -> None:
    body = {"data": [{"taskUUID": UUID, "mediaUUID": "m-1", "mediaURL": VIDEO_URL}]}

    state = parse_task_states(body)[UUID]

    assert (state.status, state.video_uuid, state.video_url) == ("success", "m-1", VIDEO_URL)


def test_documented_failure_shape_in_top_level_errors() -> None:
    body = {
        "errors": [
            {
                "code": "timeoutProvider",
                "status": "error",
                "message": "The external provider did not respond within the timeout window.",
                "documentation": "https://runware.ai/docs/en/video-inference/api-reference",
                "taskUUID": UUID,
            }
        ]
    }

    state = parse_task_states(body)[UUID]

    assert state.status == "error"
    assert state.error == TaskFailure(
        code="timeoutProvider",
        message="The external provider did not respond within the timeout window.",
    )
    assert state.error.retryable


def test_sdk_failure_shape_in_data_with_nested_error() -> None:
    body = {
        "data": [
            {
                "taskType": "videoInference",
                "taskUUID": UUID,
                "status": "error",
                "error": {"code": "timeoutProvider", "message": "no answer in time"},
            }
        ]
    }

    state = parse_task_states(body)[UUID]

    assert state.status == "error"
    assert state.error == TaskFailure(code="timeoutProvider", message="no answer in time")


#: a Runware message echoing the task's webhookURL, secret and all
ECHOED_WEBHOOK = (
    "Invalid value for webhookURL: https://reelflow.example/v1/webhooks/runware/s3cr3t-w3bh00k"
    " is not reachable."
)


@pytest.mark.parametrize(
    "body",
    [
        {"errors": [{"code": "invalidWebhookURL", "message": ECHOED_WEBHOOK, "taskUUID": UUID}]},
        {"data": [{"taskUUID": UUID, "status": "error", "error": {"message": ECHOED_WEBHOOK}}]},
    ],
)
def test_a_runware_message_that_echoes_the_webhook_url_is_stored_without_its_secret(
    body: dict[str, Any],
) -> None:
    failure = parse_task_states(body)[UUID].error

    assert failure is not None
    assert "s3cr3t-w3bh00k" not in failure.message
    assert failure.message == (
        "Invalid value for webhookURL: https://reelflow.example/v1/webhooks/runware/***"
        " is not reachable."
    )


def test_error_item_without_nested_error_uses_its_own_fields() -> None:
    body = {"data": [{"taskUUID": UUID, "status": "error", "code": "taskFailed", "message": "x"}]}

    assert parse_task_states(body)[UUID].error == TaskFailure(code="taskFailed", message="x")


def test_validation_error_keeps_parameter_and_allowed_values() -> None:
    body = {
        "errors": [
            {
                "code": "unsupportedDuration",
                "message": "Invalid value for duration parameter.",
                "parameter": "duration",
                "type": "float",
                "taskUUID": UUID,
                "allowedValues": [4, 6, 7, 8],
            }
        ]
    }

    failure = parse_task_states(body)[UUID].error

    assert failure is not None
    assert failure.parameter == "duration"
    assert failure.allowed_values == (4, 6, 7, 8)
    assert not failure.retryable


def test_singular_error_object_and_list_are_accepted() -> None:
    entry = {"code": "taskFailed", "message": "boom", "taskUUID": UUID}

    assert parse_task_states({"error": entry})[UUID].status == "error"
    assert parse_task_states({"error": [entry]})[UUID].status == "error"


def test_data_and_errors_in_one_body_are_both_read() -> None:
    body = {
        "data": [{"taskType": "videoInference", "taskUUID": OTHER, "videoURL": VIDEO_URL}],
        "errors": [{"code": "timeoutProvider", "message": "late", "taskUUID": UUID}],
    }

    states = parse_task_states(body)

    assert states[OTHER].status == "success"
    assert states[UUID].status == "error"


def test_an_error_beats_a_processing_item_for_the_same_task() -> None:
    body = {
        "data": [{"taskUUID": UUID, "status": "processing"}],
        "errors": [{"code": "timeoutProvider", "message": "late", "taskUUID": UUID}],
    }

    assert parse_task_states(body)[UUID].status == "error"


def test_bad_api_key_names_no_task_so_it_is_a_request_level_error() -> None:
    body = {
        "errors": [
            {
                "code": "invalidApiKey",
                "message": "Invalid API key. Get one at https://my.runware.ai/signup",
                "parameter": "apiKey",
                "taskType": "authentication",
            }
        ]
    }

    assert parse_task_states(body) == {}
    assert [entry["code"] for entry in request_level_errors(body)] == ["invalidApiKey"]


def test_legacy_websocket_error_shape_is_an_error_entry() -> None:
    body = {"error": True, "errorId": 19, "errorMessage": "Invalid api key"}

    assert [entry["errorMessage"] for entry in error_entries(body)] == ["Invalid api key"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"data": None},
        {"data": "nonsense", "errors": 3},
        {"data": [1, "x", None, {"status": "success"}]},
        {"data": [{"taskUUID": 42, "status": "success"}]},
    ],
)
def test_malformed_bodies_yield_no_states_rather_than_crashing(body: dict[str, Any]) -> None:
    assert parse_task_states(body) == {}


def test_wrongly_typed_numbers_are_dropped_not_trusted() -> None:
    body = {"data": [{"taskUUID": UUID, "status": "processing", "progress": "40", "cost": True}]}

    state = parse_task_states(body)[UUID]

    assert (state.progress, state.cost) == (None, None)


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
def test_a_cost_that_is_not_a_finite_number_is_unknown(raw: str) -> None:
    # Python's json accepts these words; a NaN summed into a project's cost stays NaN.
    body = json.loads(
        f'{{"data": [{{"taskUUID": "{UUID}", "status": "success",'
        f' "videoURL": "https://example.com/v.mp4", "cost": {raw}}}]}}'
    )
    state = parse_task_states(body)[UUID]

    assert state.cost is None
