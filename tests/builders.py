"""Builders of the messages tests need, with the fields a test does not care about filled in."""

from __future__ import annotations

from reelflow_common.domain import ClipStatus
from reelflow_common.messages import ClipUpdated
from reelflow_common.store import TaskFailed, TaskSucceeded


def clip_updated(seq: int, *, project_id: str = "p1", tenant_id: str = "t1") -> ClipUpdated:
    """The project's change ``seq``: its one clip (``c1``, scene 0) processing."""
    return ClipUpdated.model_validate(
        {
            "project_id": project_id,
            "tenant_id": tenant_id,
            "seq": seq,
            "clip": {"task_uuid": "c1", "scene_index": 0, "status": ClipStatus.PROCESSING},
            "counts": {"total_clips": 1, "completed": 0, "pending": 1, "failed": 0},
        }
    )


def video(name: str, cost: float | None) -> TaskSucceeded:
    """A task's end with a video named ``name`` (its URL and Runware's UUID), of ``cost``."""
    return TaskSucceeded(video_url=f"https://v/{name}.mp4", video_uuid=name, cost=cost)


def failure(code: str) -> TaskFailed:
    """A task's end without a video, of Runware's (or our) error ``code``."""
    return TaskFailed(code=code, message=f"{code} happened")
