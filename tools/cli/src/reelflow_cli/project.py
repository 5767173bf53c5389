"""A project as the WebSocket tells it, applied by ``seq``: old news never moves a clip back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"success", "failed", "cancelled"})


@dataclass
class ClipState:
    task_uuid: str
    scene_index: int
    status: str
    video_url: str | None = None
    error: str | None = None
    #: Runware's progress (0-99) while processing, once the server has stored one
    progress: int | None = None

    @classmethod
    def from_wire(cls, clip: dict[str, Any]) -> ClipState:
        error = clip.get("error")
        message = None
        if isinstance(error, dict):
            message = f"{error.get('code', 'error')}: {error.get('message', '')}"
        progress = clip.get("progress")
        return cls(
            task_uuid=str(clip["task_uuid"]),
            scene_index=int(clip["scene_index"]),
            status=str(clip["status"]),
            video_url=clip.get("video_url"),
            error=message,
            progress=progress if isinstance(progress, int) else None,
        )


@dataclass
class ProjectState:
    project_id: str
    seq: int = -1
    title: str = ""
    status: str = "generating"
    total: int = 0
    completed: int = 0
    pending: int = 0
    failed: int = 0
    clips: dict[int, ClipState] = field(default_factory=dict)  # by scene

    @property
    def finished(self) -> bool:
        # The last clip.updated is followed by project.finished, which brings the final status.
        return self.seq >= 0 and self.pending == 0 and self.status != "generating"

    def apply(self, message: dict[str, Any]) -> bool:
        """Take one WebSocket message; whether anything changed."""
        seq = message.get("seq")
        if not isinstance(seq, int) or seq <= self.seq:
            return False
        kind = message.get("type")
        if kind == "snapshot":
            project = message["project"]
            self.title = str(project.get("title", ""))
            self.status = str(project["status"])
            self._counts(project)
            self.clips = {
                clip.scene_index: clip
                for clip in map(ClipState.from_wire, project.get("results", []))
            }
        elif kind == "clip.updated":
            clip = ClipState.from_wire(message["clip"])
            self.clips[clip.scene_index] = clip  # a retry's new task replaces its scene's
            self._counts(message["counts"])
            if self.pending:
                self.status = "generating"
        elif kind == "project.finished":
            self.status = str(message["status"])
            self._counts(message["counts"])
        self.seq = seq
        return True

    def _counts(self, counts: dict[str, Any]) -> None:
        self.total = int(counts["total_clips"])
        self.completed = int(counts["completed"])
        self.pending = int(counts["pending"])
        self.failed = int(counts["failed"])
