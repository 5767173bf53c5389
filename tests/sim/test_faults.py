"""Injected faults: capacity errors and an accepted submit whose answer is lost."""

from typing import Any

import httpx
import pytest

from reelflow_runware_sim.testing import running_simulator
from tests.sim.helpers import client_for, send, video


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("rate_429", 429, "rateLimitExceeded"),
        ("rate_503", 503, "serviceUnavailable"),
        ("rate_504", 504, "requestTimeout"),
    ],
)
async def test_a_capacity_fault_answers_with_its_status_and_stores_nothing(
    fault: str, status: int, code: str
) -> None:
    async with running_simulator(**{fault: 1.0}) as sim, client_for(sim) as http:
        task = video()

        answer = await send(http, task)

        assert answer.status_code == status
        assert answer.json()["errors"][0]["code"] == code
        assert not (await sim.task(task["taskUUID"]))["accepted"]
        assert (await sim.stats())["http_status"] == {str(status): 1}


async def test_fault_rates_split_requests_between_the_statuses() -> None:
    rates = {"rate_429": 0.2, "rate_503": 0.2, "rate_504": 0.2, "seed": 3}
    async with running_simulator(**rates) as sim, client_for(sim) as http:
        statuses = {(await send(http, video())).status_code for _ in range(60)}

    assert statuses == {200, 429, 503, 504}


@pytest.mark.parametrize(
    ("prompt", "config"),
    [("a lighthouse at dusk", {"drop_rate": 1.0}), ("a lighthouse [sim:drop]", {})],
)
async def test_a_dropped_answer_hides_an_accepted_and_billed_task(
    prompt: str, config: dict[str, Any]
) -> None:
    async with running_simulator(**config) as sim, client_for(sim) as http:
        task = video(prompt)

        with pytest.raises(httpx.RemoteProtocolError):
            await send(http, task)

        truth = await sim.task(task["taskUUID"])
        assert (truth["accepted"], truth["billed"], truth["dropped_answers"]) == (True, True, 1)

        again = await send(http, task)

        assert again.json()["errors"][0]["code"] == "conflictTaskUUID"
        truth = await sim.task(task["taskUUID"])
        assert (truth["submissions"], truth["dropped_answers"]) == (2, 1)
        assert (await sim.stats())["http_status"] == {"dropped": 1, "400": 1}
