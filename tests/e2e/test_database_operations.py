"""Database operations per clip, create to terminal, through the real services.

Counted by the server itself (the admin ``top`` command, per namespace of the
stack's database), for projects of 1, 10 and 50 scenes. Nothing watches the
projects through the database: the test waits for ``project.finished`` on the
event exchange. The reconciler's periodic query and the poll statistics' periodic
write and read (``poll_stats``) are left out by long intervals (each costs one or two
operations per interval per replica, whatever the number of clips), and
webhooks are off (polling alone; a poll never touches the database).

Copies of the videos are off for the target (the e2e stacks keep none); a second
test measures the same with every video copied to a local directory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from reelflow_devtools import dbcounters
from reelflow_devtools.dbcounters import Counters
from reelflow_devtools.launcher import Stack
from tests.e2e.stack import e2e_config, started
from tests.waiting import PROCESS_DEADLINE_S

pytestmark = pytest.mark.e2e

#: issue 8's target, for every project size
MAX_OPS_PER_CLIP = 5
FAST = "[sim:latency=10]"


QUIET = {
    "REELFLOW_RECONCILE_INTERVAL_S": "3600",
    "REELFLOW_POLL_STATS_INTERVAL_S": "3600",
    "REELFLOW_LEASE_S": "600",
}


@pytest.fixture
def quiet_stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield from started(e2e_config(amqp_url, mongo_url, tmp_path / "stack", webhooks=False, **QUIET))


@pytest.fixture
def copying_stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    storage = {
        "REELFLOW_STORAGE_BACKEND": "local",
        "REELFLOW_STORAGE_DIR": str(tmp_path / "videos"),
        "REELFLOW_VIDEO_URL_SECRET": "e2e-video-url-secret",
    }
    config = e2e_config(amqp_url, mongo_url, tmp_path / "stack", webhooks=False, **QUIET, **storage)
    yield from started(config)


async def operations(stack: Stack) -> Counters:
    return await dbcounters.operations(stack.mongo_url, stack.config.database)


async def test_a_clip_costs_at_most_five_database_operations_at_any_project_size(
    quiet_stack: Stack,
) -> None:
    figures = await measure(quiet_stack, until="project.finished")

    per_clip = {scenes: sum(ops.values()) / scenes for scenes, ops in figures.items()}
    print(f"database operations per clip (by collection): {figures}; per clip: {per_clip}")
    assert all(value <= MAX_OPS_PER_CLIP for value in per_clip.values()), per_clip
    # A one-scene project: its insert, its clip's processing and its success, whose update
    # finishes the project too (beside them the API's first look-up of the key, then cached).
    assert figures[1]["projects"] == 3, figures[1]
    # Polls read nothing: what a 50-scene project costs grows with its clips, two each.
    assert sum(figures[50].values()) <= 2 * 50 + 3


async def test_keeping_a_copy_of_a_video_costs_one_more_operation_per_clip(
    copying_stack: Stack,
) -> None:
    """The copy reads nothing (its command carries the URL) and writes once: ``clip.stored``."""
    figures = await measure(copying_stack, until="clip.stored")

    per_clip = {scenes: sum(ops.values()) / scenes for scenes, ops in figures.items()}
    print(f"with copies, database operations per clip: {figures}; per clip: {per_clip}")
    # One write more than without copies; a loaded machine may add a poll that finds a
    # clip still processing, so the bound is the per-clip target plus the copy.
    assert all(value <= MAX_OPS_PER_CLIP + 1 for value in per_clip.values()), per_clip


async def measure(stack: Stack, *, until: str) -> dict[int, dict[str, int]]:
    """Operations per collection for projects of 1, 10 and 50 scenes, each counted until
    ``until`` arrived for each of its clips (``project.finished``: once)."""
    key = await stack.issue_key("tenant-ops")
    connection = await aio_pika.connect_robust(stack.config.amqp_url)
    figures: dict[int, dict[str, int]] = {}
    async with (
        connection,
        httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as api,
    ):
        channel = await connection.channel()
        finished = await channel.declare_queue(exclusive=True)
        await finished.bind(f"{stack.config.amqp_prefix}reelflow.events", f"{until}.*")
        for scenes in (1, 10, 50):
            expected = 1 if until == "project.finished" else scenes
            before = await operations(stack)
            body = {"scenes": [{"prompt": f"scene {i} {FAST}"} for i in range(scenes)]}
            created = await api.post("/v1/projects", json=body)
            assert created.status_code == 202, created.text
            project_id = created.json()["project_id"]
            seen = set()
            async with asyncio.timeout(PROCESS_DEADLINE_S), finished.iterator() as events:
                async for message in events:
                    await message.ack()
                    body = json.loads(message.body)
                    if body["project_id"] == project_id:
                        seen.add(body["seq"])  # a re-published event is no second clip
                        if len(seen) == expected:
                            break
            after = await operations(stack)
            figures[scenes] = {
                name: counts["total"] for name, counts in dbcounters.spent(before, after).items()
            }
            status = (await api.get(f"/v1/projects/{project_id}")).json()
            assert status["status"] == "completed"
    return figures
