"""What the project store takes and gives: frozen models, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import ClipUpdated, ClipView, Event
from reelflow_common.store.timefmt import rfc3339


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewClip(_Frozen):
    """One scene of a project to create: the request fields of its Runware task."""

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    fps: int | None = None


class NewProject(_Frozen):
    """A project to create; ``request_hash`` tells a replay from a conflicting reuse of a key."""

    tenant_id: str
    title: str
    model: str
    scenes: list[NewClip] = Field(min_length=1)
    idempotency_key: str | None = None
    request_hash: str | None = None
    correlation_id: str | None = None


class Clip(NewClip):
    """One clip of a project: one Runware task, keyed by the task UUID reelflow chose.

    Its request fields are :class:`NewClip`'s; the rest is what became of it.
    """

    task_uuid: str
    scene_index: int
    status: ClipStatus
    #: the project's model, repeated here so a submitter needs nothing else
    model: str
    video_url: str | None = None
    video_uuid: str | None = None
    cost: float | None = None
    error: dict[str, str] | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None

    def view(self) -> ClipView:
        """The clip as frontends see it; ``submitting`` shows as ``queued``."""
        return ClipView(
            task_uuid=self.task_uuid,
            scene_index=self.scene_index,
            status=self.status.public,
            video_url=self.video_url,
            cost=self.cost,
            error=self.error,
            submitted_at=self.submitted_at,
            completed_at=self.completed_at,
        )

    def seed_value(self) -> str:
        """The clip in the seed's ``clips`` column: its URL, ``"pending"`` or ``"failed"``.

        The seed had no cancellation; a cancelled clip will never have a video, so it
        reads as ``"failed"`` there (its ``results`` entry says ``cancelled``).
        """
        if self.status is ClipStatus.SUCCESS and self.video_url:
            return self.video_url
        if self.status.is_terminal:
            return "failed"
        return "pending"


class Project(_Frozen):
    """A project as stored, without its event log; ``clips`` ordered by scene."""

    id: str
    tenant_id: str
    title: str
    model: str
    status: ProjectStatus
    seq: int
    counts: Counts
    clips: list[Clip]
    correlation_id: str | None = None
    dispatched: bool = False
    #: when clips were last queued (creation or a retry); names the dispatch that covers them
    undispatched_since: datetime | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    def clip(self, task_uuid: str) -> Clip | None:
        return next((clip for clip in self.clips if clip.task_uuid == task_uuid), None)

    def public_status(self, *, include_results: bool = True) -> dict[str, Any]:
        """The project status of the public API; its first fields are the seed's response.

        ``failed`` counts cancelled clips too, as the seed's ``clips`` map shows them,
        so ``completed + pending + failed == total_clips`` holds as it did in the seed.
        """
        counts = self.counts
        status: dict[str, Any] = {
            "success": True,
            "project_id": self.id,
            "total_clips": counts.total_clips,
            "completed": counts.completed,
            "pending": counts.pending,
            "failed": counts.failed + counts.cancelled,
            "all_complete": counts.pending == 0,
            "clips": {clip.task_uuid: clip.seed_value() for clip in self.clips},
            "status": self.status.value,
            "title": self.title,
        }
        if include_results:
            status["results"] = [
                clip.view().model_dump(mode="json", exclude_none=True) for clip in self.clips
            ]
        status["created_at"] = rfc3339(self.created_at)
        status["updated_at"] = rfc3339(self.updated_at)
        return status


class CreateResult(_Frozen):
    """The project a create call stands for; ``created`` is False for an idempotent replay."""

    project: Project
    created: bool


class Outcome(NamedTuple):
    """A project after a change, with the events the caller is to publish (maybe none)."""

    project: Project
    events: list[Event]

    @property
    def new_clips(self) -> list[Clip]:
        """The clips a retry added, which the caller is to submit."""
        replacing = [
            event.task_uuid
            for event in self.events
            if isinstance(event, ClipUpdated) and event.replaces_task_uuid
        ]
        return [clip for task_uuid in replacing if (clip := self.project.clip(task_uuid))]
