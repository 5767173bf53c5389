"""Every message that travels over RabbitMQ, as a frozen pydantic model.

Commands are imperative and have exactly one consumer (``SubmitClip``,
``CheckClip``, ``RecordRunwareResult``); events are past tense and fan out
(``ClipUpdated``, ``ProjectFinished``). Each message carries its own envelope
fields: ``message_id``, ``correlation_id`` (the HTTP request that started the
chain), ``occurred_at`` and ``schema_version``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    """Envelope fields shared by every message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    message_id: str = Field(default_factory=_new_id)
    correlation_id: str | None = None
    occurred_at: datetime = Field(default_factory=_now)

    #: the AMQP ``type`` property; consumers check it before parsing
    message_type: ClassVar[str]

    def headers(self) -> dict[str, str]:
        """Correlation ids that travel as AMQP headers and are bound into log lines."""
        found: dict[str, str] = {}
        for key in ("project_id", "task_uuid"):
            value = getattr(self, key, None)
            if value is not None:
                found[key] = str(value)
        if self.correlation_id:
            found["request_id"] = self.correlation_id
        return found


# --- commands -----------------------------------------------------------------


class SubmitClip(Message):
    """Send one clip to Runware (``videoInference``, async delivery)."""

    message_type: ClassVar[str] = "submit_clip"
    project_id: str
    task_uuid: str
    attempt: int = Field(default=1, ge=1)


class CheckClip(Message):
    """Ask Runware for the state of one task (``getResponse``)."""

    message_type: ClassVar[str] = "check_clip"
    project_id: str
    task_uuid: str
    attempt: int = Field(default=1, ge=1)
    submitted_at: datetime


class RecordRunwareResult(Message):
    """A task state that reached us without a poll (a Runware webhook)."""

    message_type: ClassVar[str] = "record_runware_result"
    project_id: str
    task_uuid: str
    #: Runware's answer body for the task as received: ``{"data": [...]}`` or ``{"errors": [...]}``
    body: dict[str, Any]


# --- events -------------------------------------------------------------------


class ClipView(BaseModel):
    """A clip as frontends see it (REST ``results`` items and WebSocket ``clip``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_uuid: str
    scene_index: int
    status: ClipStatus
    video_url: str | None = None
    cost: float | None = None
    error: dict[str, str] | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None


class ClipUpdated(Message):
    """A clip's public status changed; ``seq`` is the project's sequence after the change."""

    message_type: ClassVar[str] = "clip.updated"
    project_id: str
    tenant_id: str
    seq: int
    clip: ClipView
    counts: Counts
    #: on a retry, the failed task this clip replaces (same scene); clients drop that entry
    replaces_task_uuid: str | None = None

    @property
    def task_uuid(self) -> str:
        return self.clip.task_uuid


class ProjectFinished(Message):
    """The last clip of a project became terminal. Emitted exactly once per finish."""

    message_type: ClassVar[str] = "project.finished"
    project_id: str
    tenant_id: str
    seq: int
    status: ProjectStatus
    counts: Counts


Event = ClipUpdated | ProjectFinished
