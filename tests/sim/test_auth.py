"""Authentication: a Bearer header or an authentication task first in the array."""

import httpx
import pytest

from reelflow_runware_sim.testing import RunningSimulator
from tests.sim.helpers import video

INVALID_API_KEY = {
    "errors": [
        {
            "code": "invalidApiKey",
            "message": "Invalid API key. Get one at https://my.runware.ai/signup",
            "parameter": "apiKey",
            "taskType": "authentication",
        }
    ]
}


async def test_a_bearer_header_authenticates(runware_sim: RunningSimulator) -> None:
    headers = {"Authorization": f"Bearer {runware_sim.api_key}"}
    async with httpx.AsyncClient(base_url=runware_sim.base_url) as client:
        answer = await client.post("/v1", json=[video()], headers=headers)

    assert answer.status_code == 200


async def test_an_authentication_task_first_in_the_array_authenticates(
    runware_sim: RunningSimulator,
) -> None:
    auth = {"taskType": "authentication", "apiKey": runware_sim.api_key}
    task = video()
    async with httpx.AsyncClient(base_url=runware_sim.base_url) as client:
        answer = await client.post("/v1", json=[auth, task])

    assert answer.status_code == 200
    assert answer.json() == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}


@pytest.mark.parametrize(
    ("headers", "prefix"),
    [
        ({}, []),
        ({"Authorization": "Bearer not-a-key"}, []),
        ({"Authorization": "sim-key"}, []),
        ({}, [{"taskType": "authentication", "apiKey": "not-a-key"}]),
    ],
    ids=["no-key", "bad-bearer", "no-bearer-scheme", "bad-auth-task"],
)
async def test_a_missing_or_bad_key_is_refused_with_401(
    runware_sim: RunningSimulator, headers: dict[str, str], prefix: list[dict[str, str]]
) -> None:
    task = video()
    async with httpx.AsyncClient(base_url=runware_sim.base_url) as client:
        answer = await client.post("/v1", json=[*prefix, task], headers=headers)

    assert answer.status_code == 401
    assert answer.json() == INVALID_API_KEY
    assert not (await runware_sim.task(task["taskUUID"]))["accepted"]
