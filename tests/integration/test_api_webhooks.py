"""The API in-process: Runware webhooks become ``RecordRunwareResult`` commands for the poller."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from reelflow_common.messages import RecordRunwareResult
from reelflow_common.topology import RECORD_RESULT
from tests.integration.api_helpers import Api, assert_problem, isolated_api

# One app serves the module; each test starts from an empty result queue.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SECRET = "hook-secret-123"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(
        amqp_url,
        mongo_url,
        public_base_url="https://reelflow.test",
        webhook_secret=SecretStr(SECRET),
    ) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def api(shared_api: Api) -> Api:
    await shared_api.drain(RECORD_RESULT)
    return shared_api


def success(task_uuid: str) -> dict[str, Any]:
    return {
        "taskType": "videoInference",
        "taskUUID": task_uuid,
        "status": "success",
        "videoURL": f"https://cdn.test/{task_uuid}.mp4",
        "cost": 0.25,
    }


async def post(api: Api, secret: str, body: Any, project_id: str | None = "p-1") -> Any:
    params = {} if project_id is None else {"project_id": project_id}
    return await api.client.post(f"/v1/webhooks/runware/{secret}", params=params, json=body)


async def test_a_webhook_publishes_one_record_result_per_task(api: Api) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    failed = {"taskUUID": second, "code": "providerError", "message": "boom"}
    body = {"data": [success(first)], "errors": [failed]}

    response = await post(api, SECRET, body)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2}
    received = await api.drain(RECORD_RESULT)
    commands = [RecordRunwareResult.model_validate(message.body) for message in received]
    assert sorted(c.task_uuid for c in commands) == sorted([first, second])
    assert {c.project_id for c in commands} == {"p-1"}
    assert all(c.body == body for c in commands)
    assert {m.headers["task_uuid"] for m in received} == {first, second}
    assert {m.type for m in received} == {"record_runware_result"}


@pytest.mark.parametrize(
    ("body", "project_id"),
    [
        ({"data": [success("x")]}, "p-1"),
        ({"data": [success("x")]}, None),
        ({"nothing": True}, "p-1"),
        ([1, 2], "p-1"),
    ],
    ids=["good-body", "no-project-id", "no-task", "not-an-object"],
)
@pytest.mark.parametrize("secret", ["wrong-secret", SECRET[:-1], SECRET + "4"])
async def test_a_wrong_secret_is_a_404_whatever_the_request_holds(
    api: Api, secret: str, body: Any, project_id: str | None
) -> None:
    response = await post(api, secret, body, project_id)

    assert_problem(response, 404)
    assert await api.drain(RECORD_RESULT) == []


async def test_a_wrong_secret_with_a_body_that_is_not_json_is_a_404(api: Api) -> None:
    response = await api.client.post(
        "/v1/webhooks/runware/wrong",
        params={"project_id": "p-1"},
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 404)


@pytest.mark.parametrize(
    "body",
    [{}, {"data": []}, {"data": [{"status": "success"}]}, {"errors": [{"code": "x"}]}],
    ids=["empty", "no-data", "no-task-uuid", "error-without-task"],
)
async def test_a_body_without_tasks_is_a_422(api: Api, body: dict[str, Any]) -> None:
    response = await post(api, SECRET, body)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body"]
    assert await api.drain(RECORD_RESULT) == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'"text"', b"\xff"],
    ids=["broken", "array", "string", "bytes"],
)
async def test_a_body_that_is_not_a_json_object_is_a_422(api: Api, content: bytes) -> None:
    response = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=content,
        headers={"Content-Type": "application/json"},
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body"]


async def test_the_right_secret_without_a_project_id_is_a_422_naming_it(api: Api) -> None:
    response = await post(api, SECRET, {"data": [success("x")]}, project_id=None)

    problem = assert_problem(response, 422)
    assert ["query", "project_id"] in [error["loc"] for error in problem["errors"]]


async def test_without_a_configured_secret_every_webhook_is_a_404(
    amqp_url: str, mongo_url: str
) -> None:
    async with isolated_api(amqp_url, mongo_url) as api:
        for secret in ("", "None", "null", SECRET):
            response = await post(api, secret or "%20", {"data": [success("x")]})
            assert_problem(response, 404)
        assert await api.drain(RECORD_RESULT) == []
