"""reelflow_clips_finished_total counts each clip's end once, by status and error code.

Counted by the writer whose update ended the clip: a duplicate, a late answer or a
redelivery (whose update does not apply) counts nothing, however the end came (a Runware
answer, our ceiling, a cancel).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from reelflow_common.domain import ClipRequest
from reelflow_common.mongo import Database
from reelflow_common.store import (
    TIMED_OUT,
    NewProject,
    Project,
    ProjectStore,
    TaskFailed,
    TaskSucceeded,
)

pytestmark = pytest.mark.integration

ENDS = [
    ("success", ""),
    ("failed", TIMED_OUT),
    ("failed", "insufficientCredits"),
    ("failed", "other"),
    ("cancelled", ""),
]


def finished() -> dict[tuple[str, str], float]:
    return {
        (status, code): REGISTRY.get_sample_value(
            "reelflow_clips_finished_total", {"status": status, "code": code}
        )
        or 0.0
        for status, code in ENDS
    }


@pytest.fixture
async def store(mongo_db: Database) -> ProjectStore:
    store = ProjectStore(mongo_db, lease_s=600)
    await store.ensure_indexes()
    return store


async def created(store: ProjectStore, scenes: int) -> Project:
    new = NewProject(
        tenant_id="tenant-a",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt=f"scene {i}", duration=4) for i in range(scenes)],
    )
    return (await store.create(new)).project


def record(store: ProjectStore, project: Project, index: int, result: Any) -> Any:
    return store.record(project.id, index, project.clips[index].task_uuid, result)


def failure(code: str) -> TaskFailed:
    return TaskFailed(code=code, message="boom")


async def test_each_end_is_counted_once_by_status_and_known_code(store: ProjectStore) -> None:
    before = finished()
    project = await created(store, 4)
    video = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.1)

    # Each end twice at once (webhook hint and chain, say), and once more later.
    for index, result in enumerate(
        [video, failure(TIMED_OUT), failure("insufficientCredits"), failure("someNewCode")]
    ):
        changes = await asyncio.gather(*(record(store, project, index, result) for _ in "ab"))
        assert sum(change.applied for change in changes) == 1
        assert not (await record(store, project, index, result)).applied
    cancelled = await created(store, 3)
    await record(store, cancelled, 0, video)
    outcome = await store.cancel(cancelled.id, tenant_id="tenant-a")
    assert outcome is not None
    again = await store.cancel(cancelled.id, tenant_id="tenant-a")  # a second click
    assert again is not None

    counted = {end: count - before[end] for end, count in finished().items()}
    assert counted == {
        ("success", ""): 2,
        ("failed", TIMED_OUT): 1,
        ("failed", "insufficientCredits"): 1,
        ("failed", "other"): 1,  # a code reelflow does not know: a bounded label
        ("cancelled", ""): 2,
    }
