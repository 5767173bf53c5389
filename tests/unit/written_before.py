"""Clips as stored before the clip entry was slimmed, for the tests that read or change them."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def clip_written_before(scene: int, queued_at: datetime, **fields: object) -> dict[str, Any]:
    """A clip as stored before the clip entry was slimmed: every field, None ones too."""
    return {
        "scene_index": scene,
        "video_url": None,
        "video_uuid": None,
        "cost": None,
        "error": None,
        "queued_at": queued_at,
        "submitted_at": None,
        "completed_at": None,
        "updated_at": queued_at,
        "watched_since": queued_at,
    } | fields


def written_before(doc: dict[str, Any], queued_at: datetime) -> dict[str, Any]:
    """``doc`` with each clip widened to the shape written before (its own fields win)."""
    clips = {
        key: clip_written_before(int(key), queued_at) | clip for key, clip in doc["clips"].items()
    }
    return doc | {"clips": clips}
