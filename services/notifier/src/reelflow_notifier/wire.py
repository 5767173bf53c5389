"""What travels to WebSocket clients: plain JSON-ready dicts, built from models. No I/O.

Event messages are the event models without their envelope (``message_id``,
``occurred_at``, ``schema_version``, ``correlation_id``, ``tenant_id``), with
``type`` first. ``counts.failed`` includes cancelled clips, as the project
status's ``failed`` does, so a snapshot and the events after it add up the same
way: ``completed + pending + failed == total_clips``.
"""

from __future__ import annotations

from typing import Any

from reelflow_common.domain import Counts
from reelflow_common.messages import Event
from reelflow_common.storage import VideoLinks
from reelflow_common.store import Project

WireMessage = dict[str, Any]

_ENVELOPE = frozenset(
    {"schema_version", "message_id", "correlation_id", "occurred_at", "tenant_id"}
)
#: written first, or reshaped, by event_message itself
_HEAD = frozenset({"project_id", "seq", "counts"})


def counts_message(counts: Counts) -> dict[str, int]:
    return {
        "total_clips": counts.total_clips,
        "completed": counts.completed,
        "pending": counts.pending,
        "failed": counts.failed + counts.cancelled,
    }


def event_message(event: Event) -> WireMessage:
    """``{"type": "clip.updated" | "project.finished" | "clip.stored", "seq": …, …}``."""
    body = event.model_dump(mode="json", exclude=set(_ENVELOPE | _HEAD), exclude_none=True)
    return {
        "type": event.message_type,
        "seq": event.seq,
        "project_id": event.project_id,
        **body,
        "counts": counts_message(event.counts),
    }


def snapshot_message(project: Project, *, links: VideoLinks | None = None) -> WireMessage:
    """``{"type": "snapshot", "seq": …, "project": <the REST project status>}``."""
    return {
        "type": "snapshot",
        "seq": project.seq,
        "project": project.public_status(include_results=True, links=links),
    }


def error_message(message: str, *, project_id: str | None = None) -> WireMessage:
    error: WireMessage = {"type": "error", "message": message}
    if project_id is not None:
        error["project_id"] = project_id
    return error
