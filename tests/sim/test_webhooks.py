"""Webhooks: one POST per finished item, retries on failure, duplicates and drops."""

import asyncio
import socket
from typing import Any

import pytest

from reelflow_runware_sim.testing import RunningSimulator, running_simulator
from tests.sim.helpers import client_for, send, video
from tests.sim.receiver import webhook_receiver
from tests.waiting import DEADLINE_S


async def settled(sim: RunningSimulator, task_uuid: str, **expected: int) -> dict[str, Any]:
    """Wait until the task's ground truth has the expected webhook counters; return it."""
    async with asyncio.timeout(DEADLINE_S):
        await sim.wait_for(
            lambda: all(
                getattr(sim.state.tasks[task_uuid], name) == value
                for name, value in expected.items()
            )
        )
    return await sim.task(task_uuid)


async def test_a_finished_task_is_posted_to_its_webhook_as_a_data_item() -> None:
    async with (
        running_simulator(speedup=1000) as sim,
        client_for(sim) as http,
        webhook_receiver() as receiver,
    ):
        task = video("[sim:latency=0] a kite", webhookURL=receiver.url, includeCost=True)
        await send(http, task)

        async with asyncio.timeout(DEADLINE_S):
            [call] = await receiver.wait_for_calls(1)
        truth = await settled(sim, task["taskUUID"], webhook_deliveries=1)

    assert call.path == "/hooks/runware?token=abc"
    assert call.headers["content-type"] == "application/json"
    assert not [name for name in call.headers if "signature" in name]
    video_uuid = truth["video_uuids"][0]
    assert call.body == {
        "data": [
            {
                "taskType": "videoInference",
                "taskUUID": task["taskUUID"],
                "status": "success",
                "videoUUID": video_uuid,
                "videoURL": f"{sim.base_url}/video/{video_uuid}.mp4",
                "seed": call.body["data"][0]["seed"],
                "cost": 0.4,
            }
        ]
    }
    assert truth["webhook_attempts"] == 1


async def test_a_failed_task_is_posted_in_the_failure_shape() -> None:
    async with (
        running_simulator(speedup=1000) as sim,
        client_for(sim) as http,
        webhook_receiver() as receiver,
    ):
        task = video("[sim:latency=0] [sim:fail] a kite", webhookURL=receiver.url)
        await send(http, task)

        async with asyncio.timeout(DEADLINE_S):
            [call] = await receiver.wait_for_calls(1)

    [error] = call.body["errors"]
    assert (error["code"], error["taskUUID"]) == ("timeoutProvider", task["taskUUID"])


async def test_a_webhook_answered_with_500_is_retried_until_it_succeeds() -> None:
    async with (
        running_simulator(speedup=1000) as sim,
        client_for(sim) as http,
        webhook_receiver(500, 503) as receiver,
    ):
        task = video("[sim:latency=0] a kite", webhookURL=receiver.url)
        await send(http, task)

        async with asyncio.timeout(DEADLINE_S):
            calls = await receiver.wait_for_calls(3)
        truth = await settled(sim, task["taskUUID"], webhook_deliveries=1)

    assert [call.status for call in calls] == [500, 503, 200]
    assert calls[0].body == calls[2].body
    assert truth["webhook_attempts"] == 3


async def test_an_unreachable_webhook_is_given_up_after_the_last_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    simulator = running_simulator(speedup=1000, webhook_retry_delays=[1.0, 1.0])
    async with simulator as sim, client_for(sim) as http:
        task = video("[sim:latency=0] a kite", webhookURL=f"http://127.0.0.1:{closed_port}/")
        await send(http, task)

        truth = await settled(sim, task["taskUUID"], webhook_attempts=3)

    assert truth["webhook_deliveries"] == 0


@pytest.mark.parametrize(
    ("prompt", "config"),
    [("a kite", {"webhook_duplicate_rate": 1.0}), ("a kite [sim:webhook=duplicate]", {})],
)
async def test_a_duplicated_webhook_arrives_twice(prompt: str, config: dict[str, Any]) -> None:
    async with (
        running_simulator(speedup=1000, **config) as sim,
        client_for(sim) as http,
        webhook_receiver() as receiver,
    ):
        task = video(f"[sim:latency=0] {prompt}", webhookURL=receiver.url)
        await send(http, task)

        async with asyncio.timeout(DEADLINE_S):
            first, second = await receiver.wait_for_calls(2)
        await settled(sim, task["taskUUID"], webhook_deliveries=2)

    assert first.body == second.body


async def test_a_dropped_webhook_never_arrives_though_the_task_succeeded() -> None:
    async with (
        running_simulator(speedup=1000, webhook_drop_rate=1.0) as sim,
        client_for(sim) as http,
        webhook_receiver() as receiver,
    ):
        task = video("[sim:latency=0] a kite", webhookURL=receiver.url)
        await send(http, task)

        truth = await settled(sim, task["taskUUID"], webhook_dropped=1)

    assert truth["state"] == "success"
    assert (truth["webhook_attempts"], receiver.calls) == (0, [])


async def test_stopping_the_simulator_cancels_pending_deliveries() -> None:
    async with running_simulator(speedup=1.0) as sim, client_for(sim) as http:
        await send(http, video("a very slow kite", webhookURL="http://127.0.0.1:9/hook"))
        assert len(asyncio.all_tasks()) > 1

    assert asyncio.all_tasks() == {asyncio.current_task()}
