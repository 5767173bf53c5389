"""getResponse: cumulative state from processing to success, failures in both shapes."""

import uuid

import httpx
import pytest

from reelflow_runware_sim import state
from reelflow_runware_sim.testing import RunningSimulator, running_simulator
from tests.sim.helpers import client_for, poll, poll_until_done, send, video


async def test_a_task_is_processing_with_progress_then_succeeds_with_video_seed_and_cost(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    # 2000 simulated seconds at speedup 1000: two real seconds, ample to see "processing".
    task = video("a paper boat on a river [sim:latency=2000]", includeCost=True, seed=99)
    await send(http, task)

    first = (await send(http, poll(task["taskUUID"]))).json()
    final = await poll_until_done(http, task["taskUUID"])

    [processing] = first["data"]
    assert processing["taskType"] == "videoInference"
    assert processing["taskUUID"] == task["taskUUID"]
    assert processing["status"] == "processing"
    assert isinstance(processing["progress"], int)
    assert 0 <= processing["progress"] <= 99
    [success] = final["data"]
    truth = await runware_sim.task(task["taskUUID"])
    assert success == {
        "taskType": "videoInference",
        "taskUUID": task["taskUUID"],
        "status": "success",
        "videoUUID": truth["video_uuids"][0],
        "videoURL": f"{runware_sim.base_url}/video/{truth['video_uuids'][0]}.mp4",
        "seed": 99,
        "cost": 0.4,
    }
    assert truth["state"] == "success"


async def test_a_finished_task_repeats_on_every_poll_without_cost_unless_asked(
    http: httpx.AsyncClient,
) -> None:
    task = video("[sim:latency=0] a quiet harbour")
    await send(http, task)

    first = await poll_until_done(http, task["taskUUID"])
    again = (await send(http, poll(task["taskUUID"]))).json()

    assert first == again
    assert "cost" not in first["data"][0]
    assert isinstance(first["data"][0]["seed"], int)


async def test_several_results_are_answered_item_by_item(http: httpx.AsyncClient) -> None:
    task = video("[sim:latency=0] two takes of a waterfall", numberResults=2)
    await send(http, task)

    body = await poll_until_done(http, task["taskUUID"])

    assert [item["status"] for item in body["data"]] == ["success", "success"]
    assert len({item["videoUUID"] for item in body["data"]}) == 2


async def test_several_polls_in_one_request_are_answered_each(http: httpx.AsyncClient) -> None:
    done, waiting = video("[sim:latency=0] done"), video("[sim:hang] waiting")
    await send(http, done, waiting)
    await poll_until_done(http, done["taskUUID"])

    body = (await send(http, poll(done["taskUUID"]), poll(waiting["taskUUID"]))).json()

    assert [(i["taskUUID"], i["status"]) for i in body["data"]] == [
        (done["taskUUID"], "success"),
        (waiting["taskUUID"], "processing"),
    ]


async def test_a_failed_generation_moves_to_errors_by_default(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    task = video("[sim:latency=0] [sim:fail=timeoutProvider] a storm")
    await send(http, task)

    body = await poll_until_done(http, task["taskUUID"])

    assert "data" not in body
    [error] = body["errors"]
    assert error["code"] == "timeoutProvider"
    assert error["status"] == "error"
    assert error["taskUUID"] == task["taskUUID"]
    assert error["taskType"] == "videoInference"
    assert error["message"].startswith("The external provider did not respond")
    truth = await runware_sim.task(task["taskUUID"])
    assert (truth["state"], truth["billed"]) == ("error", False)


async def test_fail_once_fails_the_first_task_with_its_prompt_and_lets_a_retry_succeed(
    http: httpx.AsyncClient,
) -> None:
    prompt = f"[sim:latency=0] [sim:fail=once] a storm {uuid.uuid4()}"
    first, retry, again = video(prompt), video(prompt), video(prompt)
    other = video(f"[sim:latency=0] [sim:fail=once] another storm {uuid.uuid4()}")

    await send(http, first)
    failed = await poll_until_done(http, first["taskUUID"])
    await send(http, retry, other)
    retried = await poll_until_done(http, retry["taskUUID"])
    other_body = await poll_until_done(http, other["taskUUID"])
    await send(http, again)
    succeeded_again = await poll_until_done(http, again["taskUUID"])

    assert [error["code"] for error in failed["errors"]] == ["timeoutProvider"]
    assert [item["status"] for item in retried["data"]] == ["success"]
    assert [item["status"] for item in succeeded_again["data"]] == ["success"]
    assert [error["code"] for error in other_body["errors"]] == ["timeoutProvider"]


async def test_fail_once_remembers_a_bounded_number_of_prompts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "FAILED_ONCE_KEPT", 2)
    async with running_simulator(speedup=1e6) as sim, client_for(sim) as http:
        tasks = [video(f"[sim:latency=0] [sim:fail=once] storm {n}") for n in range(3)]
        await send(http, *tasks)
        oldest_again = video(tasks[0]["positivePrompt"])
        await send(http, oldest_again)
        body = await poll_until_done(http, oldest_again["taskUUID"])

        assert len(sim.state.failed_once) == 2
    assert [error["code"] for error in body["errors"]] == ["timeoutProvider"]


async def test_a_failed_generation_is_an_error_item_in_data_when_configured() -> None:
    simulator = running_simulator(speedup=1000, failure_shape="data")
    async with simulator as sim, client_for(sim) as http:
        task = video("[sim:latency=0] [sim:fail=providerContentPolicyViolation] a storm")
        await send(http, task)

        body = await poll_until_done(http, task["taskUUID"])

    [item] = body["data"]
    assert item["status"] == "error"
    assert item["taskType"] == "videoInference"
    assert item["error"]["code"] == "providerContentPolicyViolation"
    assert item["error"]["message"]


async def test_a_configured_error_rate_fails_tasks_with_the_configured_code() -> None:
    config = {"speedup": 1e6, "task_error_rate": 1.0, "task_error_code": "inferenceError"}
    async with running_simulator(**config) as sim, client_for(sim) as http:
        task = video()
        await send(http, task)

        body = await poll_until_done(http, task["taskUUID"])

    assert body["errors"][0]["code"] == "inferenceError"


@pytest.mark.parametrize("prompt", ["[sim:hang] a clock", "a clock"])
async def test_a_hanging_task_stays_processing(prompt: str) -> None:
    rate = 0.0 if "[sim:hang]" in prompt else 1.0
    async with running_simulator(speedup=1e6, hang_rate=rate) as sim, client_for(sim) as http:
        task = video(prompt)
        await send(http, task)

        body = (await send(http, poll(task["taskUUID"]))).json()
        truth = await sim.task(task["taskUUID"])

    assert body["data"][0]["status"] == "processing"
    assert truth["state"] == "hang"


async def test_an_unknown_task_is_failed_or_not_found(http: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())

    answer = await send(http, poll(unknown))

    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert (error["code"], error["taskUUID"]) == ("taskFailedOrNotFound", unknown)
