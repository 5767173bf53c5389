"""What travels to WebSocket clients: one pydantic model per message type, written as JSON. No I/O.

Event messages are the event models without their envelope (``message_id``,
``occurred_at``, ``schema_version``, ``correlation_id``, ``tenant_id``), with
``type`` first. ``counts.failed`` includes cancelled clips, as the project
status's ``failed`` does, so a snapshot and the events after it add up the same
way: ``completed + pending + failed == total_clips``; ``counts.cancelled`` (as the
status's ``cancelled``) says how many of those were cancelled. Fields without a value
are left out, never ``null``.

The models are the protocol's definition: ``docs/asyncapi-websocket.json`` is
generated from them (with the client's messages from
:mod:`reelflow_notifier.multiplex`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.domain import CostTotals, Counts, ProjectStatus
from reelflow_common.messages import AttemptView, ClipView, Event
from reelflow_common.storage import VideoLinks
from reelflow_common.store import Project, ProjectStatusView

WireMessage = dict[str, Any]

#: the ``type`` of each message the server sends besides the events (docs/API.md lists them all)
SNAPSHOT: Final = "snapshot"
ERROR: Final = "error"
UNSUBSCRIBED: Final = "unsubscribed"


class _ServerMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def wire(self) -> WireMessage:
        return self.model_dump(mode="json", exclude_none=True)


class WireCounts(BaseModel):
    """A project's clip counts; ``failed`` includes cancelled clips, ``cancelled`` says how
    many of them were cancelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_clips: int
    completed: int
    pending: int
    failed: int
    cancelled: int


class SnapshotMessage(_ServerMessage):
    """The whole project, as ``GET /v1/projects/{project_id}`` answers it: replace what you show."""

    type: Literal["snapshot"] = SNAPSHOT
    seq: int = Field(description="the project's seq this snapshot is at")
    project: ProjectStatusView


def _cost() -> Any:
    """Every event's ``cost``."""
    return Field(
        default=None,
        description="the project's `cost` after this change, as `GET /v1/projects/{project_id}`"
        " at this `seq` shows it: replace the one you hold (absent only from a service of the"
        " release before, during an upgrade: keep yours until the next)",
    )


class ClipUpdatedMessage(_ServerMessage):
    """One clip changed: ``clip`` is the clip now, whole, as the project status's ``results``
    shows it; it replaces the scene's clip. ``attempts`` only when the change moved a task
    into or out of them (all of them then, ``[]`` for none): without them, keep yours."""

    type: Literal["clip.updated"] = "clip.updated"
    seq: int
    project_id: str
    clip: ClipView
    replaces_task_uuid: str | None = Field(
        default=None,
        description="a retry's: the task this clip replaces, now in its `attempts`; drop this"
        " key from the project's `clips`",
    )
    cost_counted: bool | None = Field(
        default=None,
        description="true: the clip took a video whose cost the project's `cost` held already"
        " (a retry took a late video a `clip.attempt_succeeded` told)",
    )
    counts: WireCounts
    cost: CostTotals | None = _cost()


class ProjectFinishedMessage(_ServerMessage):
    """Every clip is terminal: the project's final status (once per finish)."""

    type: Literal["project.finished"] = "project.finished"
    seq: int
    project_id: str
    status: ProjectStatus
    counts: WireCounts
    cost: CostTotals | None = _cost()


class ClipStoredMessage(_ServerMessage):
    """A successful clip's video is in reelflow's own storage: play it from ``stored_url``.

    The clip's status does not change; ``stored_url`` is signed and expires (REST
    answers and snapshots always carry a fresh one).
    """

    type: Literal["clip.stored"] = "clip.stored"
    seq: int
    project_id: str
    scene_index: int
    task_uuid: str
    stored_url: str
    size_bytes: int
    counts: WireCounts
    cost: CostTotals | None = _cost()


class AttemptStoredMessage(_ServerMessage):
    """The video of a task in the scene's ``attempts`` is in reelflow's own storage: that
    attempt's ``stored_url`` (the clip, its status and the counts do not change)."""

    type: Literal["clip.attempt_stored"] = "clip.attempt_stored"
    seq: int
    project_id: str
    scene_index: int
    task_uuid: str
    stored_url: str
    size_bytes: int
    counts: WireCounts
    cost: CostTotals | None = _cost()


class AttemptSucceededMessage(_ServerMessage):
    """A task the clip does not stand for delivered a video after all, and Runware billed it.

    ``attempt`` replaces the scene's attempt of its ``task_uuid`` (or joins them: the clip's
    own task, given up on); ``cost`` includes it; the clip's status and the counts do not
    change (a failed clip takes the video when it is retried).
    """

    type: Literal["clip.attempt_succeeded"] = "clip.attempt_succeeded"
    seq: int
    project_id: str
    scene_index: int
    attempt: AttemptView
    counts: WireCounts
    cost: CostTotals | None = _cost()


class ErrorMessage(_ServerMessage):
    """A client message was refused (``/v1/ws`` only); the connection stays open."""

    type: Literal["error"] = ERROR
    message: str
    project_id: str | None = None
    retry_after_s: float | None = Field(
        default=None,
        description="only when the message came too fast: it was not applied; send it again"
        " after this many seconds",
    )


class UnsubscribedMessage(_ServerMessage):
    """Answers an unsubscribe (``/v1/ws`` only): nothing of that project follows."""

    type: Literal["unsubscribed"] = UNSUBSCRIBED
    project_id: str


#: every message the server sends, by ``type``
SERVER_MESSAGES: tuple[type[_ServerMessage], ...] = (
    SnapshotMessage,
    ClipUpdatedMessage,
    ProjectFinishedMessage,
    ClipStoredMessage,
    AttemptSucceededMessage,
    AttemptStoredMessage,
    ErrorMessage,
    UnsubscribedMessage,
)


def counts_message(counts: Counts) -> dict[str, int]:
    """:class:`WireCounts` as a dict, built directly: it is on the per-connection path."""
    return {
        "total_clips": counts.total_clips,
        "completed": counts.completed,
        "pending": counts.pending,
        "failed": counts.failed + counts.cancelled,
        "cancelled": counts.cancelled,
    }


_ENVELOPE = frozenset(
    {"schema_version", "message_id", "correlation_id", "occurred_at", "tenant_id"}
)
#: written first, or last, or reshaped, by event_message itself
_HEAD = frozenset({"project_id", "seq", "counts", "cost"})


def event_message(event: Event) -> WireMessage:
    """``{"type": "clip.updated" | "project.finished" | "clip.stored" | …, "seq": …, …}``.

    Rendered once per watching connection for every event, so built straight from
    the event's own dump (twice as fast as through :class:`ClipUpdatedMessage`);
    a unit test holds its output to the message models.
    """
    body = event.model_dump(mode="json", exclude=set(_ENVELOPE | _HEAD), exclude_none=True)
    message = {
        "type": event.message_type,
        "seq": event.seq,
        "project_id": event.project_id,
        **body,
        "counts": counts_message(event.counts),
    }
    if event.cost is not None:
        message["cost"] = event.cost.model_dump(mode="json")
    return message


class _EventTexts:
    """The last events' wire texts: an event is encoded once for all its watchers.

    Keyed by the message id with the fields that place it (a copy of an event
    under the same id but another ``seq`` is another text).
    """

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._texts: OrderedDict[tuple[str, str, int, str], str] = OrderedDict()

    def text(self, event: Event) -> str:
        key = (event.message_id, event.project_id, event.seq, event.message_type)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = encode(event_message(event))
            while len(self._texts) > self._entries:
                self._texts.popitem(last=False)
        return text


#: enough for the events a replica routes while its connections send them
_EVENT_TEXTS = _EventTexts(1024)


def event_text(event: Event) -> str:
    """:func:`event_message` as JSON text, encoded once per event however many send it."""
    return _EVENT_TEXTS.text(event)


def encode(message: WireMessage) -> str:
    """A message as the JSON text a WebSocket frame carries."""
    return json.dumps(message)


def snapshot_message(project: Project, *, links: VideoLinks | None = None) -> WireMessage:
    """``{"type": "snapshot", "seq": …, "project": <the REST project status>}``."""
    status = project.public_status(include_results=True, links=links)
    return SnapshotMessage(seq=project.seq, project=status).wire()


def error_message(
    message: str, *, project_id: str | None = None, retry_after_s: float | None = None
) -> WireMessage:
    return ErrorMessage(message=message, project_id=project_id, retry_after_s=retry_after_s).wire()


def unsubscribed_message(project_id: str) -> WireMessage:
    return UnsubscribedMessage(project_id=project_id).wire()
