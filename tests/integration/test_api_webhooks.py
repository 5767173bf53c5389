"""The API in-process: a Runware webhook becomes ONE ``CheckHintedTasks`` naming its tasks.

The body's results are never passed on: the poller asks Runware itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from reelflow_common.messages import CheckHintedTasks
from reelflow_common.topology import HINTED_CHECK
from tests.integration.api_helpers import Api, assert_problem, isolated_api

# One app serves the module; each test starts from an empty hint queue.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SECRET = "hook-secret-123"
LIMIT = 4096


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(
        amqp_url,
        mongo_url,
        public_base_url="https://reelflow.test",
        webhook_secret=SecretStr(SECRET),
        webhook_max_body_bytes=LIMIT,
    ) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def api(shared_api: Api) -> Api:
    await shared_api.drain(HINTED_CHECK)
    return shared_api


def success(task_uuid: str) -> dict[str, Any]:
    return {
        "taskType": "videoInference",
        "taskUUID": task_uuid,
        "status": "success",
        "videoURL": f"https://evil.example/{task_uuid}.mp4",
        "cost": 0.25,
    }


async def post(
    api: Api, secret: str, body: Any, project_id: str | None = "p-1", **params: Any
) -> Any:
    query = ({} if project_id is None else {"project_id": project_id}) | params
    return await api.client.post(f"/v1/webhooks/runware/{secret}", params=query, json=body)


async def test_a_webhook_publishes_one_hint_naming_its_tasks_and_nothing_of_their_results(
    api: Api,
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    failed = {"taskUUID": second, "code": "providerError", "message": "boom"}
    body = {"data": [success(first)], "errors": [failed]}

    response = await post(api, SECRET, body, scene=3)

    assert response.status_code == 202, response.text
    assert response.json() == {"received": 2}
    [received] = await api.drain(HINTED_CHECK)
    hint = CheckHintedTasks.model_validate(received.body)
    assert (hint.project_id, hint.scene_index, hint.task_uuids) == ("p-1", 3, [first, second])
    assert "evil.example" not in str(received.body)
    assert received.type == "check_hinted_tasks"


async def test_a_task_named_twice_or_in_capitals_is_named_once(api: Api) -> None:
    task = str(uuid.uuid4())
    body = {"data": [success(task.upper()), {"taskUUID": task, "status": "processing"}]}

    response = await post(api, SECRET, body)

    assert response.status_code == 202
    [received] = await api.drain(HINTED_CHECK)
    assert received.body["task_uuids"] == [task]
    assert received.body["scene_index"] is None


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
    assert await api.drain(HINTED_CHECK) == []


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
    assert await api.drain(HINTED_CHECK) == []


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
        assert await api.drain(HINTED_CHECK) == []


@pytest.mark.parametrize(
    "task_uuid",
    ["not-a-uuid", "\ud800", 42, None, ["x"]],
    ids=["text", "lone-surrogate", "number", "null", "list"],
)
async def test_a_task_uuid_that_is_not_a_uuid_string_is_a_422(api: Api, task_uuid: Any) -> None:
    # json.dumps escapes a lone surrogate as \\ud800, which a JSON parser turns back into one.
    body = json.dumps({"data": [{"taskUUID": task_uuid, "status": "success"}]})

    response = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body"]
    assert await api.drain(HINTED_CHECK) == []


async def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(api: Api) -> None:
    padding = "x" * LIMIT
    declared = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=b"{" + padding.encode(),  # not even JSON: it is never parsed
        headers={"Content-Type": "application/json"},
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield padding.encode()[: LIMIT // 4]

    streamed = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}",
        params={"project_id": "p-1"},
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert_problem(declared, 413)
    assert_problem(streamed, 413)
    assert await api.drain(HINTED_CHECK) == []


async def test_a_body_naming_too_many_tasks_is_a_413(amqp_url: str, mongo_url: str) -> None:
    async with isolated_api(
        amqp_url, mongo_url, webhook_secret=SecretStr(SECRET), webhook_max_body_bytes=1 << 20
    ) as roomy:
        body = {"data": [{"taskUUID": str(uuid.uuid4())} for _ in range(101)]}

        response = await post(roomy, SECRET, body)

        assert_problem(response, 413)
        assert await roomy.drain(HINTED_CHECK) == []


async def test_a_scene_that_is_not_a_small_integer_is_a_422(api: Api) -> None:
    response = await post(api, SECRET, {"data": [success(str(uuid.uuid4()))]}, scene="first")

    problem = assert_problem(response, 422)
    assert ["query", "scene"] in [error["loc"] for error in problem["errors"]]
