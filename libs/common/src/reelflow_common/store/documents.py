"""Project documents <-> models. The shape of the ``projects`` collection lives here.

One document per project: ``_id`` is the project id, ``clips`` maps each task UUID
to its clip, ``events`` holds the recent change events as the JSON of their
messages (with ``type``), ``seq`` counts public changes. ``dispatched`` is an
outbox flag: False from the moment clips are queued (``undispatched_since``)
until every ``SubmitClip`` for them has been published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import ClipUpdated, Event, ProjectFinished
from reelflow_common.mongo import Document
from reelflow_common.store.models import Clip, NewClip, NewProject, Project
from reelflow_common.store.timefmt import as_utc

PROJECT_INDEXES = [
    IndexModel(
        [("tenant_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
        name="tenant_newest",
    ),
    IndexModel(
        [("tenant_id", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
        name="tenant_status_newest",
    ),
    # Partial: projects created without a key must not collide on a missing one.
    IndexModel(
        [("tenant_id", ASCENDING), ("idempotency_key", ASCENDING)],
        name="tenant_idempotency_key",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
    IndexModel([("dispatched", ASCENDING), ("undispatched_since", ASCENDING)], name="undispatched"),
]

_EVENT_TYPES: dict[str, type[ClipUpdated] | type[ProjectFinished]] = {
    ClipUpdated.message_type: ClipUpdated,
    ProjectFinished.message_type: ProjectFinished,
}

#: clip fields that belong to the Runware request, copied as they are onto a retry
REQUEST_FIELDS = tuple(NewClip.model_fields)
_OUTCOME_FIELDS = ("video_url", "video_uuid", "cost", "error", "submitted_at", "completed_at")
_DATETIME_FIELDS = ("created_at", "submitted_at", "completed_at", "updated_at")


def clip_document(task_uuid: str, scene_index: int, request: NewClip, *, now: datetime) -> Document:
    """A new, queued clip."""
    doc: Document = {"task_uuid": task_uuid, "scene_index": scene_index}
    doc["status"] = ClipStatus.QUEUED.value
    doc |= {field: getattr(request, field) for field in REQUEST_FIELDS}
    doc |= dict.fromkeys(_OUTCOME_FIELDS)
    doc |= {"created_at": now, "updated_at": now}
    return doc


def new_project_document(
    new: NewProject, *, project_id: str, task_uuids: list[str], now: datetime
) -> Document:
    """The document of a project just accepted: every clip queued, nothing dispatched yet."""
    clips = {
        task_uuid: clip_document(task_uuid, index, scene, now=now)
        for index, (task_uuid, scene) in enumerate(zip(task_uuids, new.scenes, strict=True))
    }
    counts = Counts(total_clips=len(clips), completed=0, pending=len(clips), failed=0)
    return {
        "_id": project_id,
        "tenant_id": new.tenant_id,
        "title": new.title,
        "model": new.model,
        "status": ProjectStatus.GENERATING.value,
        "seq": 0,
        "counts": counts.model_dump(),
        "clips": clips,
        "events": [],
        "correlation_id": new.correlation_id,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "dispatched": False,
        "undispatched_since": now,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def _utc_or_none(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value


def clip_from_document(doc: Document, *, model: str) -> Clip:
    values = {key: _utc_or_none(value) for key, value in doc.items()}
    return Clip.model_validate(values | {"model": model})


def project_from_document(doc: Document) -> Project:
    """The project of a document read with or without its ``events``."""
    clips = [clip_from_document(clip, model=doc["model"]) for clip in doc["clips"].values()]
    clips.sort(key=lambda clip: (clip.scene_index, clip.created_at or doc["created_at"]))
    return Project(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        title=doc["title"],
        model=doc["model"],
        status=doc["status"],
        seq=doc["seq"],
        counts=Counts.model_validate(doc["counts"]),
        clips=clips,
        correlation_id=doc.get("correlation_id"),
        dispatched=doc.get("dispatched", False),
        undispatched_since=doc.get("undispatched_since"),
        created_at=as_utc(doc["created_at"]),
        updated_at=as_utc(doc["updated_at"]),
        finished_at=_utc_or_none(doc.get("finished_at")),
    )


def event_document(event: Event) -> Document:
    """An event as stored: the JSON of its message, with its ``type``."""
    return {"type": event.message_type} | event.model_dump(mode="json")


def event_from_document(doc: Document) -> Event:
    fields = dict(doc)
    event_type = _EVENT_TYPES[fields.pop("type")]
    return event_type.model_validate(fields)
