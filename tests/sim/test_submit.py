"""Submitting videoInference tasks: acknowledgements, duplicates, several tasks at once."""

import httpx

from reelflow_runware_sim.testing import RunningSimulator
from tests.sim.helpers import send, video


async def test_a_valid_task_is_acknowledged_with_its_uuid(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    task = video(
        outputType="URL",
        outputFormat="MP4",
        numberResults=1,
        includeCost=True,
        deliveryMethod="async",
        providerSettings={"google": {"generateAudio": True}},
    )

    answer = await send(http, task)

    assert answer.status_code == 200
    assert answer.json() == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}
    truth = await runware_sim.task(task["taskUUID"])
    assert (truth["accepted"], truth["billed"], truth["submissions"]) == (True, True, 1)
    assert truth["cost"] == 0.6  # 4 s of Veo 3.1 Fast with audio at $0.15/s


async def test_reusing_a_task_uuid_is_a_conflict_and_neither_creates_nor_bills_again(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    task = video()
    await send(http, task)

    answer = await send(http, {**task, "duration": 8})

    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["code"] == "conflictTaskUUID"
    assert error["taskUUID"] == task["taskUUID"]
    truth = await runware_sim.task(task["taskUUID"])
    assert truth["submissions"] == 2
    assert truth["cost"] == 0.4  # still the first submit's 4 s
    assert (await runware_sim.stats())["tasks"] == 1


async def test_each_task_of_a_request_is_answered_on_its_own(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    good, bad, other = video(), video(duration=5), video()

    answer = await send(http, good, bad, other)

    assert answer.status_code == 200
    body = answer.json()
    assert [item["taskUUID"] for item in body["data"]] == [good["taskUUID"], other["taskUUID"]]
    assert [(e["code"], e["taskUUID"]) for e in body["errors"]] == [
        ("unsupportedDuration", bad["taskUUID"])
    ]
    assert not (await runware_sim.task(bad["taskUUID"]))["accepted"]


async def test_a_request_whose_tasks_all_fail_takes_the_error_status(
    http: httpx.AsyncClient,
) -> None:
    answer = await send(http, video(duration=5), video(model="nobody:1@1"))

    assert answer.status_code == 400
    assert "data" not in answer.json()
    assert [e["code"] for e in answer.json()["errors"]] == ["unsupportedDuration", "invalidModel"]


async def test_a_body_that_is_not_a_task_array_is_a_bad_request(http: httpx.AsyncClient) -> None:
    for body in ({"taskType": "videoInference"}, [], ["videoInference"]):
        answer = await http.post("/v1", json=body)

        assert answer.status_code == 400
        assert answer.json()["errors"][0]["code"] == "invalidRequestBody"


async def test_an_unknown_task_type_is_refused(http: httpx.AsyncClient) -> None:
    answer = await send(http, {"taskType": "imageTeleport", "taskUUID": video()["taskUUID"]})

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "unsupportedTaskType"
