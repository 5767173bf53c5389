"""The vocabulary of a project and its clips, shared by every service."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ClipStatus(StrEnum):
    """Public clip states. ``submitting`` is internal and shown as ``queued``."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_CLIP_STATUSES

    @property
    def public(self) -> ClipStatus:
        return ClipStatus.QUEUED if self is ClipStatus.SUBMITTING else self


TERMINAL_CLIP_STATUSES = frozenset({ClipStatus.SUCCESS, ClipStatus.FAILED, ClipStatus.CANCELLED})


class ProjectStatus(StrEnum):
    GENERATING = "generating"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Counts(BaseModel):
    """Clip counts of a project, as the seed's status response names them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_clips: int
    completed: int
    pending: int
    failed: int
    cancelled: int = 0


def final_project_status(counts: Counts) -> ProjectStatus:
    """The status of a project none of whose clips is pending any more.

    A project someone cancelled stays ``cancelled`` whatever had finished before:
    clips are only ever cancelled by that request, and the status says what happened.
    """
    if counts.pending:
        return ProjectStatus.GENERATING
    if counts.cancelled:
        return ProjectStatus.CANCELLED
    if counts.completed == counts.total_clips:
        return ProjectStatus.COMPLETED
    if counts.completed == 0:
        return ProjectStatus.FAILED
    return ProjectStatus.PARTIAL
