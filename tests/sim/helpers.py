"""Request builders and waits shared by the simulator's contract tests."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from reelflow_runware_sim.testing import RunningSimulator
from tests.waiting import DEADLINE_S, eventually_returns


def video(prompt: str = "a red fox running through fresh snow", **fields: Any) -> dict[str, Any]:
    """A videoInference task Veo 3.1 Fast accepts, with a fresh taskUUID."""
    task: dict[str, Any] = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "google:3@3",
        "positivePrompt": prompt,
        "duration": 4,
        "width": 1280,
        "height": 720,
    }
    task.update(fields)
    return task


def poll(task_uuid: str) -> dict[str, Any]:
    """A getResponse task for `task_uuid`."""
    return {"taskType": "getResponse", "taskUUID": task_uuid}


@asynccontextmanager
async def client_for(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that authenticates to `sim` with a Bearer header."""
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=10) as client:
        yield client


async def send(http: httpx.AsyncClient, *tasks: dict[str, Any]) -> httpx.Response:
    """POST the tasks as one Runware request."""
    return await http.post("/v1", json=list(tasks))


async def poll_until_done(http: httpx.AsyncClient, task_uuid: str) -> dict[str, Any]:
    """Poll until no item is processing any more; return that body."""

    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await send(http, poll(task_uuid))).json()
        processing = any(item.get("status") == "processing" for item in body.get("data", []))
        return None if processing else body

    return await eventually_returns(done, f"task {task_uuid} to finish", DEADLINE_S, pause_s=0.01)
