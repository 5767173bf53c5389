"""The vocabulary of a project and its clips, shared by every service."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.money import Usd


class ClipStatus(StrEnum):
    """Clip states, as stored and as shown."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_CLIP_STATUSES

    @property
    def bucket(self) -> Bucket:
        """The ``counts`` field this state is counted in."""
        return _BUCKETS[self]


TERMINAL_CLIP_STATUSES = frozenset({ClipStatus.SUCCESS, ClipStatus.FAILED, ClipStatus.CANCELLED})
#: states a clip leaves only by a transition guarded on one of them (the ``pending`` bucket)
OPEN_CLIP_STATUSES = (ClipStatus.QUEUED, ClipStatus.PROCESSING)
#: a clip (or attempt) that ended without its task's video: Runware may still run and bill
#: that task, and no chain of the clip's follows it unless one found it there
GIVEN_UP_CLIP_STATUSES = (ClipStatus.CANCELLED, ClipStatus.FAILED)

#: the ``counts`` fields a clip is counted in
Bucket = Literal["pending", "completed", "failed", "cancelled"]

_BUCKETS: dict[ClipStatus, Bucket] = {
    ClipStatus.QUEUED: "pending",
    ClipStatus.PROCESSING: "pending",
    ClipStatus.SUCCESS: "completed",
    ClipStatus.FAILED: "failed",
    ClipStatus.CANCELLED: "cancelled",
}


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

    def moved(self, from_bucket: Bucket, to_bucket: Bucket, *, by: int = 1) -> Counts:
        """These counts after ``by`` clips moved from one bucket to another."""
        if from_bucket == to_bucket:
            return self
        values = self.model_dump()
        values[from_bucket] -= by
        values[to_bucket] += by
        return Counts.model_validate(values)


class CostTotals(BaseModel):
    """What the project's finished tasks cost: ``known`` of them said how much, ``unknown`` not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: Usd = Field(
        default=0.0, description="the sum of the known costs, in US dollars, rounded to 6 decimals"
    )
    known: int = Field(default=0, description="finished tasks whose cost Runware reported")
    unknown: int = Field(default=0, description="finished tasks whose cost is unknown")

    def added(self, cost: float | None, *, by: int = 1) -> CostTotals:
        """These totals with ``by`` more videos of ``cost`` each (None: unknown); ``by=-1``
        undoes one (an event log rebuilt backwards, as :meth:`Counts.moved` is)."""
        if cost is None:
            return self.model_copy(update={"unknown": self.unknown + by})
        return self.model_copy(update={"usd": self.usd + by * cost, "known": self.known + by})


class ClipRequest(BaseModel):
    """What one scene asks Runware for: the request fields of its ``videoInference`` task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    #: Runware's ``seed``, the generation's random seed (not "the seed", the prototype)
    seed: int | None = None
    fps: int | None = None


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
