"""``reelflow get``: each finished clip's whole video link, reelflow's copy first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.cli_runner import API_URL, invoke

STORED = (
    "/v1/videos/videos/3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c/0/4e2a9d1c2f0e.mp4"
    "?expires=1796428800&signature=9d1c2f0e4e2a3f6c1a2e51e04b889c1a"
)
RUNWARE = "https://vm.runware.ai/video/ws/5/vi/9d1c2f0e-4e2a-3f6c-1a2e-51e04b889c1a.mp4"
COPIED_TASK = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
NOT_COPIED_TASK = "7a1f0c2e-9b3d-4e5f-8a6b-1c2d3e4f5a6b"


def clip(scene_index: int, task_uuid: str, **fields: Any) -> dict[str, Any]:
    return {"scene_index": scene_index, "task_uuid": task_uuid, "status": "success"} | fields


PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"
PROJECT = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon",
    "status": "completed",
    "completed": 2,
    "pending": 0,
    "failed": 0,
    "total_clips": 2,
    "results": [
        clip(0, COPIED_TASK, video_url=RUNWARE, stored_url=STORED),
        clip(1, NOT_COPIED_TASK, video_url=RUNWARE),
    ],
}


def test_a_clip_shows_the_whole_link_of_reelflows_copy_else_runwares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke(monkeypatch, httpx.Response(200, json=PROJECT), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    [copied] = [line for line in lines if COPIED_TASK in line]
    [not_copied] = [line for line in lines if NOT_COPIED_TASK in line]
    assert copied.split()[-1] == f"{API_URL}{STORED}"
    assert not_copied.split()[-1] == RUNWARE


def test_a_clip_is_numbered_by_its_scene_index_as_the_api_and_the_admin_tool_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke(monkeypatch, httpx.Response(200, json=PROJECT), "get", PROJECT_ID)

    lines = result.stdout.splitlines()
    scenes = [line.split()[0] for line in lines if COPIED_TASK in line or NOT_COPIED_TASK in line]
    assert scenes == ["0", "1"]


def test_a_projects_cost_is_written_as_the_usage_report_writes_dollars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    costly = PROJECT | {"cost": {"usd": 1234.5, "known": 2, "unknown": 1}}

    result = invoke(monkeypatch, httpx.Response(200, json=costly), "get", PROJECT_ID)

    assert result.exit_code == 0, result.stderr
    assert "cost $1,234.50 + 1 unpriced" in result.stdout.splitlines()
