"""Valid commands for tests that move messages around without handling them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reelflow_common.domain import ClipRequest
from reelflow_common.messages import SubmitClip


def submit_clip(task_uuid: str = "t1", **fields: Any) -> SubmitClip:
    """A ``SubmitClip`` of project ``p1``, scene 0, with ``fields`` changed."""
    values: dict[str, Any] = {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "scene_index": 0,
        "task_uuid": task_uuid,
        "token": "k1",
        "lease_until": datetime(2030, 1, 1, tzinfo=UTC),
        "model": "google:3@3",
        "request": ClipRequest(prompt="a fox"),
    }
    return SubmitClip(**(values | fields))
