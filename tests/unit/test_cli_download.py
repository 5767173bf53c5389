"""``reelflow download``: the finished clips' videos, and with ``--earlier`` the billed videos of
a scene's earlier tasks too, each from reelflow's copy when it has one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import reelflow_cli.app as cli
from tests.unit.cli_runner import API_URL, invoke

PROJECT_ID = "3f6c1a2e-51e0-4b88-9c1a-2d3e4f5a6b7c"
CLIP_TASK = "c4738360-4dd8-4bad-84cd-fee2adfe0abc"
EARLIER_TASK = "7a1f0c2e-9b3d-4e5f-8a6b-1c2d3e4f5a6b"
FAILED_TASK = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
KEPT = "/v1/videos/videos/3f6c/0/earlier.mp4?expires=1796428800&signature=9d1c"
RUNWARE = "https://vm.runware.ai/video/ws/5/vi/clip.mp4"

PROJECT = {
    "project_id": PROJECT_ID,
    "title": "Trip to Lisbon",
    "status": "completed",
    "results": [
        {
            "scene_index": 0,
            "task_uuid": CLIP_TASK,
            "status": "success",
            "video_url": RUNWARE,
            "attempts": [
                {"task_uuid": FAILED_TASK, "status": "failed", "error": {"code": "x"}},
                # A retry's earlier task whose video came after all: billed, kept by reelflow.
                {
                    "task_uuid": EARLIER_TASK,
                    "status": "success",
                    "video_url": "https://vm.runware.ai/video/ws/5/vi/old.mp4",
                    "stored_url": KEPT,
                },
            ],
        }
    ],
}


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the command downloaded: target file name -> the URL it came from."""
    got: dict[str, str] = {}

    def download(url: str, target: Path) -> int:
        got[target.name] = url
        return 3

    monkeypatch.setattr(cli, "download", download)
    return got


def test_only_the_clips_own_videos_by_default(
    monkeypatch: pytest.MonkeyPatch, fetched: dict[str, str], tmp_path: Path
) -> None:
    answer = httpx.Response(200, json=PROJECT)
    result = invoke(monkeypatch, answer, "download", PROJECT_ID, str(tmp_path))

    assert result.exit_code == 0, result.stderr
    assert fetched == {f"scene-00-{CLIP_TASK}.mp4": RUNWARE}


def test_earlier_also_saves_an_earlier_tasks_billed_video_from_reelflows_copy(
    monkeypatch: pytest.MonkeyPatch, fetched: dict[str, str], tmp_path: Path
) -> None:
    answer = httpx.Response(200, json=PROJECT)
    args = ("download", PROJECT_ID, str(tmp_path), "--earlier", "--json")
    result = invoke(monkeypatch, answer, *args)

    assert result.exit_code == 0, result.stderr
    assert fetched == {
        f"scene-00-{CLIP_TASK}.mp4": RUNWARE,
        f"scene-00-earlier-{EARLIER_TASK}.mp4": f"{API_URL}{KEPT}",
    }
    report = json.loads(result.stdout)
    assert [(item["task_uuid"], item["earlier"]) for item in report["saved"]] == [
        (CLIP_TASK, False),
        (EARLIER_TASK, True),
    ]
    assert report["not_ready"] == 0
