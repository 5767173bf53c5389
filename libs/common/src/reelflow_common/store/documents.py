"""Project documents <-> models. The shape of the ``projects`` collection lives here.

One document per project (``schema: 2``): ``clips`` maps each scene index (a
decimal string) to the scene's clip state (only what no other field says; how its
task ended is one BSON value, :func:`pack_result`), ``requests`` holds each scene's
Runware request (written once; one BSON value, :func:`pack_requests`), ``events``
the recent changes as stored events, each one BSON value
(:mod:`reelflow_common.store.eventlog`), ``seq`` counts public changes,
``due_at`` is a lower bound of the open clips' lease expiries (the reconciler's
index), ``cost`` the totals of finished tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, IndexModel

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import ClipRequest, ClipStatus, CostTotals, Counts, ProjectStatus
from reelflow_common.mongo import Document
from reelflow_common.store.eventlog import LogHead
from reelflow_common.store.models import Attempt, ClipState, NewProject, Project
from reelflow_common.store.timefmt import as_utc

SCHEMA = 2

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
    # The reconciler's query: generating projects whose earliest lease may have expired.
    # Dense: every project has ``due_at`` from its insert on.
    IndexModel([("status", ASCENDING), ("due_at", ASCENDING)], name="reconcile_due"),
    # The three marks below are absent from most projects, so their indexes are sparse:
    # an insert writes no entry to them, nor an update that leaves the mark absent. A
    # sweep's ``{mark: {$lt: before}}`` cannot match a project without the mark, so a
    # sparse index serves it (MongoDB's planner and SecantusDB's alike), sort included.
    # New names: an index of the same name and other options cannot be created over the
    # old ones, which ``ensure_indexes`` drops (RETIRED_PROJECT_INDEXES).
    # The copy sweep's query: successes whose video may not have been copied.
    IndexModel([("copy_due_at", ASCENDING)], name="copy_due_sparse", sparse=True),
    # The reconciler's other query: projects with a replaced task whose chain may be lost
    # (finished ones too: the field is only ever set on the rare path, and unset after).
    IndexModel([("attempts_due_at", ASCENDING)], name="attempts_due_sparse", sparse=True),
    # The settle sweep's query: ends whose settlement no message stands behind, maybe lost
    # (set only on the rare paths of a reconciler's pass and the api's cancel, unset after).
    IndexModel([("settle_due_at", ASCENDING)], name="settle_due_sparse", sparse=True),
]
#: indexes of ``projects`` that earlier releases made and this one does not use (the
#: dense indexes of the three marks above): ``ensure_indexes`` drops them
RETIRED_PROJECT_INDEXES = ("copy_due", "attempts_due", "settle_due")

#: what every read leaves out unless it needs it: the requests and the event log
WITHOUT_REQUESTS_AND_EVENTS: Document = {"requests": 0, "events": 0}
#: what a (re-)submission reads: everything but the event log
WITHOUT_EVENTS: Document = {"events": 0}
#: what a writer reads back from its own update: enough to number its events and finish
LOG_HEAD: Document = {
    "tenant_id": 1,
    "seq": 1,
    "counts": 1,
    "cost": 1,
    "status": 1,
    "correlation_id": 1,
}

_DATETIME_FIELDS = ("queued_at", "submitted_at", "completed_at", "watched_since", "follow_until")
#: what :func:`pack_result` holds
_RESULT_FIELDS = ("completed_at", "video_url", "video_uuid", "cost", "late")
#: stored, but not part of the clip's state: its key says the scene, the packed end is
#: unpacked, and a clip's own ``updated_at`` (written before) is the project's and its events'
_NOT_IN_STATE = frozenset({"scene_index", "result", "updated_at"})


def clip_path(scene_index: int) -> str:
    """The dotted path of a scene's clip state (no positional ``$`` needed)."""
    return f"clips.{scene_index}"


#: what a clip may hold of a task, in either shape: a new task clears what it does not set
TASK_FIELDS = (
    "status",
    "queued_at",
    "submitted_at",
    "watched_since",
    "result",
    "error",
    "lease",
    "progress",
    "waiting",
    "charge",
    # written before the clip was slimmed (documents.py reads both shapes)
    "scene_index",
    "video_url",
    "video_uuid",
    "cost",
    "completed_at",
    "updated_at",
)


def queued_clip_document(
    task_uuid: str,
    *,
    token: str,
    lease_until: datetime,
    queued_at: datetime | None,
    charge: Charge | None = None,
) -> Document:
    """A clip queued for a new task, leased to the chain of ``token``.

    Only what no other field says: the scene is the clip's key, a clip queued with its
    project (``queued_at`` None) was queued at the project's ``created_at``
    (:func:`clip_from_document`), and it is watched since it was queued until it is
    submitted (:meth:`ClipState.watch_start`).
    """
    doc: Document = {
        "task_uuid": task_uuid,
        "status": ClipStatus.QUEUED.value,
        "lease": {"token": token, "until": lease_until},
    }
    if queued_at is not None:
        doc["queued_at"] = queued_at
    if charge is not None:
        doc["charge"] = charge.model_dump()
    return doc


def pack_result(
    *,
    completed_at: datetime,
    video_url: str | None = None,
    video_uuid: str | None = None,
    cost: float | None = None,
    late: bool = False,
) -> bytes:
    """How the clip's current task ended, as one opaque BSON value (no query looks inside).

    Written once by the change that ends the task, removed by the one that reopens
    the clip; the failure's ``error`` stays a field of its own (a retry's guard reads
    ``error.code``). ``late`` only when true: a video that came after its task had
    been given up on.
    """
    ended = {"completed_at": completed_at, "video_url": video_url, "video_uuid": video_uuid}
    return bson.encode(_without_none(ended | {"cost": cost, "late": late or None}))


def new_project_document(
    new: NewProject,
    *,
    project_id: str,
    task_uuids: list[str],
    tokens: list[str],
    now: datetime,
    lease_until: datetime,
) -> Document:
    """The document of a project just accepted: every clip queued and leased."""
    charges: list[Charge | None] = [*new.charges] if new.charges else [None] * len(new.scenes)
    # Only what no other field says (a missing field reads as None): every update of the
    # project makes the database walk, copy and re-encode the whole document.
    clips = {
        str(index): queued_clip_document(
            task_uuid, token=token, lease_until=lease_until, queued_at=None, charge=charge
        )
        for index, (task_uuid, token, charge) in enumerate(
            zip(task_uuids, tokens, charges, strict=True)
        )
    }
    counts = Counts(total_clips=len(clips), completed=0, pending=len(clips), failed=0)
    return {
        "_id": project_id,
        "schema": SCHEMA,
        "tenant_id": new.tenant_id,
        "title": new.title,
        "model": new.model,
        "status": ProjectStatus.GENERATING.value,
        "seq": 0,
        "counts": counts.model_dump(),
        "cost": CostTotals().model_dump(),
        "clips": clips,
        "requests": pack_requests(new.scenes),
        "events": [],
        "due_at": lease_until,
        "correlation_id": new.correlation_id,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def pack_requests(scenes: Sequence[ClipRequest]) -> bytes:
    """Every scene's request as one opaque BSON value (no query looks inside).

    One value instead of a subdocument per scene: every update of the project
    makes the embedded database decode, compare and re-encode the whole
    document, at a cost per field, and the requests are written once and only ever read whole.
    """
    return bson.encode({"scenes": [scene.model_dump(exclude_none=True) for scene in scenes]})


def unpack_requests(stored: bytes | list[Document]) -> list[ClipRequest]:
    """The requests as :func:`pack_requests` wrote them, or as a list (written before)."""
    return [ClipRequest.model_validate(request) for request in _stored_scenes(stored)]


def unpack_request(stored: bytes | list[Document], scene_index: int) -> ClipRequest:
    """One scene's request of :func:`unpack_requests`, the others left undecoded as models."""
    return ClipRequest.model_validate(_stored_scenes(stored)[scene_index])


def _stored_scenes(stored: bytes | list[Document]) -> list[Document]:
    if isinstance(stored, bytes | bytearray):
        scenes: list[Document] = bson.decode(bytes(stored))["scenes"]
        return scenes
    return stored


def _without_none(doc: Document) -> Document:
    return {key: value for key, value in doc.items() if value is not None}


def _utc_or_none(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value


def _with_utc(doc: Document, fields: tuple[str, ...]) -> Document:
    return {key: _utc_or_none(value) if key in fields else value for key, value in doc.items()}


def _with_utc_lease(values: Document) -> Document:
    lease = values.get("lease")
    if isinstance(lease, dict):
        values["lease"] = {"token": lease["token"], "until": as_utc(lease["until"])}
    return values


def attempt_document(attempt: Attempt) -> Document:
    # Fields an attempt only sometimes has stay out while unset, so an entry without them
    # reads the same, in this release and in the one before (ARCHITECTURE.md, "Upgrades").
    unset = {
        "lease": attempt.lease is None,
        "watched_since": attempt.watched_since is None,
        "end_recorded": not attempt.end_recorded,
        "asset": attempt.asset is None,
        "follow_until": attempt.follow_until is None,
    }
    doc = attempt.model_dump(exclude={name for name, absent in unset.items() if absent})
    doc["status"] = attempt.status.value
    return doc


def attempt_from_document(doc: Document) -> Attempt:
    values = _with_utc_lease(_with_utc(doc, _DATETIME_FIELDS))
    return Attempt.model_validate(_with_utc_asset(values))


def _with_utc_asset(values: Document) -> Document:
    asset = values.get("asset")
    if isinstance(asset, dict):
        values["asset"] = _with_utc(asset, ("stored_at", "failed_at"))
    return values


def clip_from_document(doc: Document, scene_index: int, *, created_at: datetime) -> ClipState:
    """The clip stored under ``clips.<scene_index>`` of a project created at ``created_at``.

    Either shape: the slim one (no ``scene_index``, no ``updated_at``, the end in
    ``result``, ``queued_at`` and ``watched_since`` only where no other field says
    them) or the one written before, with every field. ``queued_at`` is filled in;
    ``watched_since`` is kept only where no other field says it, as the slim shape
    stores it (``ClipState.watch_start`` derives it for every clip).
    """
    values = {key: value for key, value in doc.items() if key not in _NOT_IN_STATE}
    result = doc.get("result")
    if isinstance(result, bytes | bytearray):
        ended = bson.decode(bytes(result))
        values |= {key: ended.get(key) for key in _RESULT_FIELDS}
        values["late"] = bool(values["late"])
    values["scene_index"] = scene_index
    if values.get("queued_at") is None:
        values["queued_at"] = created_at
    values = _with_utc_lease(_with_utc(values, _DATETIME_FIELDS))
    if values.get("watched_since") == (values.get("submitted_at") or values["queued_at"]):
        values["watched_since"] = None  # said by the other fields (the shape written before)
    attempts = values.get("attempts") or {}
    values["attempts"] = {key: attempt_from_document(value) for key, value in attempts.items()}
    return ClipState.model_validate(_with_utc_asset(values))


def project_from_document(doc: Document) -> Project:
    """The project of a document read with or without its ``requests`` (never its ``events``)."""
    created_at = as_utc(doc["created_at"])
    clips = sorted(
        (
            clip_from_document(clip, int(scene), created_at=created_at)
            for scene, clip in doc["clips"].items()
        ),
        key=lambda clip: clip.scene_index,
    )
    requests = doc.get("requests")
    return Project(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        title=doc["title"],
        model=doc["model"],
        status=doc["status"],
        seq=doc["seq"],
        counts=Counts.model_validate(doc["counts"]),
        cost=CostTotals.model_validate(doc.get("cost") or {}),
        clips=clips,
        requests=None if requests is None else unpack_requests(requests),
        correlation_id=doc.get("correlation_id"),
        due_at=_utc_or_none(doc.get("due_at")),
        created_at=created_at,
        updated_at=as_utc(doc["updated_at"]),
        finished_at=_utc_or_none(doc.get("finished_at")),
    )


def log_head(project_id: str, doc: Document) -> LogHead:
    """The head of the project's event log, as ``doc`` (read with :data:`LOG_HEAD`) holds it."""
    return LogHead(
        project_id=project_id,
        tenant_id=doc["tenant_id"],
        seq=doc["seq"],
        counts=Counts.model_validate(doc["counts"]),
        correlation_id=doc.get("correlation_id"),
        cost=CostTotals.model_validate(doc.get("cost") or {}),
    )
