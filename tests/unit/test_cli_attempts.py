"""``reelflow get``: an earlier task whose video reelflow keeps says so."""

from __future__ import annotations

import io

from rich.console import Console

from reelflow_cli.render import project_details

TASK = "4e2a6b8c-1d3f-4a5b-9c7d-2e4f6a8b0c1d"


def shown(attempt: dict[str, str]) -> str:
    project = {
        "project_id": "p",
        "title": "Trip",
        "status": "cancelled",
        "completed": 0,
        "pending": 0,
        "total_clips": 1,
        "failed": 1,
        "created_at": "2026-12-04T10:11:12Z",
        "results": [
            {"task_uuid": TASK, "scene_index": 0, "status": "cancelled", "attempts": [attempt]}
        ],
    }
    out = io.StringIO()
    project_details(Console(file=out, width=200), project, "http://127.0.0.1:8000")
    (row,) = [line for line in out.getvalue().splitlines() if "earlier" in line]
    return row


def test_an_earlier_tasks_kept_video_is_marked_kept() -> None:
    attempt = {"task_uuid": TASK, "status": "success", "video_url": "https://cdn/v.mp4"}
    assert "kept by reelflow" not in shown(attempt)
    stored = attempt | {"stored_url": "/v1/videos/videos/p/0/t.mp4?expires=1&signature=s"}
    kept = shown(stored)
    assert "kept by reelflow" in kept
    # Its whole link, reelflow's copy rather than Runware's (which expires).
    assert "http://127.0.0.1:8000/v1/videos/videos/p/0/t.mp4?expires=1&signature=s" in kept
