"""The bench's task-queue baseline takes projects over HTTP and ends every clip at the simulator.

Its api in-process (ASGI) and one worker as a task, on this test's queues and
database; the simulator in-process at speedup 1000, so the SDK schedule's waits
are milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest

from reelflow_devtools.bench.task_queue.api import create_app
from reelflow_devtools.bench.task_queue.config import Config
from reelflow_devtools.bench.task_queue.topology import delete_topology
from reelflow_devtools.bench.task_queue.worker import run_worker
from reelflow_runware_sim.testing import RunningSimulator
from tests.waiting import eventually_returns

pytestmark = pytest.mark.integration


@pytest.fixture
async def baseline(
    amqp_url: str,
    mongo_url: str,
    mongo_db: Any,
    amqp_prefix: str,
    runware_sim: RunningSimulator,
) -> AsyncIterator[httpx.AsyncClient]:
    """The baseline's api (an HTTP client of it) and a worker, queues deleted afterwards."""
    config = Config(
        amqp_url=amqp_url,
        mongo_url=mongo_url,
        database=mongo_db.name,
        runware_url=runware_sim.base_url,
        runware_api_key=runware_sim.api_key,
        speedup=runware_sim.config.speedup,
        prefix=amqp_prefix,
    )
    app = create_app(config)
    stop = asyncio.Event()
    try:
        async with app.router.lifespan_context(app):
            worker = asyncio.create_task(run_worker(config, stop))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tq") as api:
                yield api
            stop.set()
            await worker
    finally:
        connection = await aio_pika.connect(amqp_url)
        try:
            await delete_topology(await connection.channel(), config)
        finally:
            await connection.close()


async def _finished(api: httpx.AsyncClient, project_id: str) -> dict[str, Any] | None:
    project: dict[str, Any] = (await api.get(f"/v1/projects/{project_id}")).json()
    return None if project["status"] == "generating" else project


async def test_every_clip_ends_once_and_the_project_with_its_last(
    baseline: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    scenes = [
        {"prompt": "at once [sim:latency=0]"},
        # 300 simulated seconds (0.3 s): polls rescheduled through the wait queues
        {"prompt": "later [sim:latency=300]"},
        {"prompt": "broken [sim:fail]"},
    ]
    answers = [
        await baseline.post("/v1/projects", json={"scenes": scenes}),
        await baseline.post("/v1/projects", json={"scenes": scenes[:1] * 4}),
    ]
    assert [answer.status_code for answer in answers] == [202, 202]
    ids = [answer.json()["project_id"] for answer in answers]

    finished = []
    for project_id in ids:

        async def probe(project_id: str = project_id) -> dict[str, Any] | None:
            return await _finished(baseline, project_id)

        finished.append(await eventually_returns(probe, f"project {project_id} finished"))
    mixed, plain = finished

    assert mixed["status"] == "partial"
    assert mixed["counts"] == {"total": 3, "pending": 0, "completed": 2, "failed": 1}
    assert [clip["status"] for clip in mixed["clips"]] == ["success", "success", "failed"]
    assert mixed["clips"][0]["video_url"]
    assert plain["status"] == "completed"
    assert plain["counts"] == {"total": 4, "pending": 0, "completed": 4, "failed": 0}
    clips = mixed["clips"] + plain["clips"]
    truths = [await runware_sim.task(clip["task_uuid"]) for clip in clips]
    assert [truth["submissions"] for truth in truths] == [1] * 7
    assert truths[1]["polls"] > 1  # the slow clip was polled again after waiting
    # Every clip Runware took was marked processing at its submit, before its end.
    succeeded = [clip for clip in clips if clip["status"] == "success"]
    assert [clip["submitted_at"] <= clip["completed_at"] for clip in succeeded] == [True] * 6
