"""Ground truth at /__sim/: tasks, request counters, reset."""

import uuid

import httpx

from tests.sim.helpers import poll, send, video


async def test_a_task_is_listed_and_described_with_its_ground_truth(
    http: httpx.AsyncClient,
) -> None:
    # Hanging, so no webhook attempt changes the record between the two reads.
    task = video("[sim:hang] a fox", includeCost=True, webhookURL="http://127.0.0.1:9/")
    await send(http, task)

    listed = (await http.get("/__sim/tasks")).json()
    answer = await http.get(f"/__sim/tasks/{task['taskUUID']}")

    assert answer.status_code == 200
    truth = answer.json()
    assert listed == [truth | {"elapsed_seconds": listed[0]["elapsed_seconds"]}]
    assert truth["task_uuid"] == task["taskUUID"]
    assert truth["model"] == "google:3@3"
    assert (truth["submissions"], truth["accepted"], truth["billed"]) == (1, True, True)
    assert truth["cost"] == 0.4
    assert truth["state"] == "hang"
    assert truth["webhook_url"] == "http://127.0.0.1:9/"


async def test_a_task_never_accepted_reads_as_not_accepted(http: httpx.AsyncClient) -> None:
    refused = video(duration=5)
    await send(http, refused)

    answer = await http.get(f"/__sim/tasks/{refused['taskUUID']}")
    not_a_uuid = await http.get("/__sim/tasks/job-1")

    assert answer.status_code == 200
    assert (answer.json()["accepted"], answer.json()["billed"]) == (False, False)
    assert not_a_uuid.status_code == 404


async def test_stats_count_requests_task_types_and_statuses(http: httpx.AsyncClient) -> None:
    task = video()
    await send(http, task, poll(task["taskUUID"]))
    await send(http, poll(str(uuid.uuid4())))
    await http.post("/v1", json=[video()])  # the client's Bearer header still applies

    stats = (await http.get("/__sim/stats")).json()

    assert stats["requests"] == 3
    assert stats["task_types"] == {"videoInference": 2, "getResponse": 2}
    assert stats["http_status"] == {"200": 2, "400": 1}
    assert stats["tasks"] == 2
    assert stats["billed_cost"] == 0.8


async def test_reset_forgets_tasks_and_counters(http: httpx.AsyncClient) -> None:
    task = video()
    await send(http, task)

    answer = await http.post("/__sim/reset")

    assert answer.status_code == 204
    assert (await http.get("/__sim/tasks")).json() == []
    assert (await http.get("/__sim/stats")).json()["requests"] == 0
    assert (await send(http, task)).status_code == 200  # the UUID is free again
