"""The capped event log of a project document, numbered by position: pure functions, no I/O.

An update cannot read the document's ``seq``, ``counts`` or ``cost`` while it writes, so
a stored event holds only what its writer knew: for ``clip.updated`` the clip as
the writer saw it after the change and the move between count buckets
(``delta``), for ``project.finished`` the final status. The numbers come from
the log's position. Every update that adds ``k`` to ``seq`` pushes exactly ``k``
events in the same update, so ``events[-1]`` has the document's ``seq``, the one
before it ``seq - 1``, and so on; the counts after ``events[j]`` are the
document's counts minus the deltas of the events after ``j``. So is the project's
``cost``: an update adds to it exactly the videos its events tell (:func:`cost_added`,
checked as each update is built), so the cost after ``events[j]`` is the document's
minus what the events after ``j`` added. Dollar amounts stored in events are rounded
(the wire's 6 decimals), and so is each cost the document adds (``Update.cost``): the
difference is the sum a read showed then, for a price of more decimals too (a document
that added such a price unrounded, before, may leave an event before it a millionth off).

:func:`materialize` turns a log and the document's ``(seq, counts, cost)`` into full
``ClipUpdated`` / ``ProjectFinished`` / ``ClipStored`` / ``AttemptSucceeded`` /
``AttemptStored`` messages:
for a writer, from the ``seq`` and ``counts`` its own update returned; for a replay,
from a read.

The database never looks inside a stored event, so each is pushed as one BSON
binary value (:func:`packed`) rather than a subdocument: every update of a
project makes the embedded database decode, compare and re-encode the whole
document, at a cost per field, and the log was most of a project's fields. Entries written as
subdocuments (before) are read the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import bson
from bson.codec_options import CodecOptions

from reelflow_common.domain import Bucket, ClipStatus, CostTotals, Counts, ProjectStatus
from reelflow_common.messages import (
    AttemptStored,
    AttemptSucceeded,
    AttemptView,
    ClipStored,
    ClipUpdated,
    ClipView,
    Event,
    ProjectFinished,
)
from reelflow_common.money import round_usd
from reelflow_common.mongo import Document
from reelflow_common.store.timefmt import as_utc

_ID_NAMESPACE = uuid.UUID("6f1c1a8e-1d0e-4b59-9b8e-6a3f1c0de7a5")
_DECODING: CodecOptions[Document] = CodecOptions(tz_aware=True)

#: a stored event: one BSON value (written since the log was packed) or a subdocument (before)
StoredEvent = Document | bytes


def packed(event: Document) -> bytes:
    """A stored event as the log keeps it: one opaque BSON value."""
    return bson.encode(event)


def unpacked(stored: StoredEvent) -> Document:
    """A stored event as a document, however it was written."""
    if isinstance(stored, bytes | bytearray):
        return bson.decode(bytes(stored), codec_options=_DECODING)
    return stored


@dataclass(frozen=True)
class LogHead:
    """What a log's events are numbered from: the document's ``seq``, and its ``counts`` and
    ``cost`` with it."""

    project_id: str
    tenant_id: str
    seq: int
    counts: Counts
    #: the request that created the project: an event's own, when its writer knew none
    correlation_id: str | None = None
    #: None: not read (the events then carry none)
    cost: CostTotals | None = None


def clip_event(
    clip: ClipView,
    *,
    from_bucket: Bucket,
    to_bucket: Bucket,
    occurred_at: datetime,
    correlation_id: str | None,
    replaces_task_uuid: str | None = None,
    cost_counted: bool = False,
) -> Document:
    """A stored ``clip.updated``: the clip as the writer knew it and its move between buckets.

    ``cost_counted``: the clip's video cost was counted before (told apart for readers).
    """
    doc: Document = {
        "type": ClipUpdated.message_type,
        "clip": clip.model_dump(mode="json", exclude_none=True),
        "delta": {"from": from_bucket, "to": to_bucket},
        "occurred_at": occurred_at,
    }
    if replaces_task_uuid is not None:
        doc["replaces_task_uuid"] = replaces_task_uuid
    if cost_counted:
        doc["cost_counted"] = True
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    return doc


def finish_event(
    status: ProjectStatus, *, occurred_at: datetime, correlation_id: str | None
) -> Document:
    """A stored ``project.finished``."""
    doc: Document = {
        "type": ProjectFinished.message_type,
        "status": status.value,
        "occurred_at": occurred_at,
    }
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    return doc


def stored_event(
    scene_index: int,
    task_uuid: str,
    *,
    stored_url: str,
    size_bytes: int,
    occurred_at: datetime,
    correlation_id: str | None,
    of_attempt: bool = False,
) -> Document:
    """A stored ``clip.stored`` (``of_attempt``: ``clip.attempt_stored``, the video of a task in
    the clip's ``attempts``): no move between buckets (no status changes)."""
    doc: Document = {
        "type": (AttemptStored if of_attempt else ClipStored).message_type,
        "scene_index": scene_index,
        "task_uuid": task_uuid,
        "stored_url": stored_url,
        "size_bytes": size_bytes,
        "occurred_at": occurred_at,
    }
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    return doc


def attempt_event(
    scene_index: int,
    attempt: AttemptView,
    *,
    occurred_at: datetime,
    correlation_id: str | None,
) -> Document:
    """A stored ``clip.attempt_succeeded``: no move between buckets (the clip did not change)."""
    doc: Document = {
        "type": AttemptSucceeded.message_type,
        "scene_index": scene_index,
        "attempt": attempt.model_dump(mode="json", exclude_none=True),
        "occurred_at": occurred_at,
    }
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    return doc


def message_id(project_id: str, seq: int) -> str:
    """One id per (project, seq), whoever builds the message: a re-publish is the same message."""
    return uuid.uuid5(_ID_NAMESPACE, f"{project_id}/{seq}").hex


def cost_added(event: Document) -> list[float | None]:
    """The costs of the videos a stored event tells the project's ``cost`` took in (None: a
    video of unknown cost): a clip's success, unless its cost was counted before
    (``cost_counted``), and an attempt's video."""
    if event["type"] == ClipUpdated.message_type:
        clip = event["clip"]
        if clip["status"] == ClipStatus.SUCCESS.value and not event.get("cost_counted"):
            return [clip.get("cost")]
    elif event["type"] == AttemptSucceeded.message_type:
        return [event["attempt"].get("cost")]
    return []


def materialize(head: LogHead, stored: Sequence[StoredEvent]) -> list[Event]:
    """The messages of the last ``len(stored)`` changes of a project at ``head``."""
    docs = [unpacked(entry) for entry in stored]
    after: list[tuple[Counts, CostTotals | None]] = []
    counts, cost = head.counts, head.cost
    for doc in reversed(docs):
        after.append((counts, cost))
        delta = doc.get("delta")
        if delta:
            counts = counts.moved(delta["to"], delta["from"])  # undo the move
        if cost is not None:
            for video in cost_added(doc):
                cost = cost.added(video, by=-1)  # undo the video
    after.reverse()
    first_seq = head.seq - len(docs) + 1
    return [
        _message(head, doc, seq=first_seq + j, counts=counts, cost=_as_shown(cost))
        for j, (doc, (counts, cost)) in enumerate(zip(docs, after, strict=True))
    ]


def _as_shown(cost: CostTotals | None) -> CostTotals | None:
    """``cost`` rounded as a read shows it: a writer's message and a replay's of one change are
    the same message (sums rebuilt by subtraction differ from the database's in the last bits)."""
    return None if cost is None else cost.model_copy(update={"usd": round_usd(cost.usd)})


def _message(
    head: LogHead, doc: Document, *, seq: int, counts: Counts, cost: CostTotals | None
) -> Event:
    common = {
        "message_id": message_id(head.project_id, seq),
        "project_id": head.project_id,
        "tenant_id": head.tenant_id,
        "seq": seq,
        "counts": counts,
        "cost": cost,
        "correlation_id": doc.get("correlation_id") or head.correlation_id,
        "occurred_at": as_utc(doc["occurred_at"]),
    }
    if doc["type"] == ProjectFinished.message_type:
        return ProjectFinished(status=ProjectStatus(doc["status"]), **common)
    if doc["type"] in (ClipStored.message_type, AttemptStored.message_type):
        stored = ClipStored if doc["type"] == ClipStored.message_type else AttemptStored
        return stored(
            scene_index=doc["scene_index"],
            task_uuid=doc["task_uuid"],
            stored_url=doc["stored_url"],
            size_bytes=doc["size_bytes"],
            **common,
        )
    if doc["type"] == AttemptSucceeded.message_type:
        return AttemptSucceeded(
            scene_index=doc["scene_index"],
            attempt=AttemptView.model_validate(doc["attempt"]),
            **common,
        )
    return ClipUpdated(
        clip=ClipView.model_validate(doc["clip"]),
        replaces_task_uuid=doc.get("replaces_task_uuid"),
        cost_counted=doc.get("cost_counted"),
        **common,
    )


def replay_after(
    head: LogHead, stored: Sequence[StoredEvent], after_seq: int
) -> list[Event] | None:
    """The events after ``after_seq`` of a project at ``head``.

    None when they cannot all be given: some have dropped out of the capped log,
    or ``after_seq`` is not a sequence number this project ever had.
    """
    if after_seq < 0 or after_seq > head.seq:
        return None
    if head.seq - after_seq > len(stored):
        return None
    keep = head.seq - after_seq
    return materialize(head, stored)[len(stored) - keep :] if keep else []


def about_scene(events: Sequence[Event], scene_index: int) -> list[Event]:
    """The events about one scene's clip, and the ``project.finished`` events among them.

    What a handler re-publishes when it finds its change already made: a crash may
    have come between the write and the publish. Consumers drop a ``seq`` they have.
    """
    return [event for event in events if _scene_of(event) in (None, scene_index)]


def _scene_of(event: Event) -> int | None:
    if isinstance(event, ClipUpdated):
        return event.clip.scene_index
    if isinstance(event, ClipStored | AttemptSucceeded | AttemptStored):
        return event.scene_index
    return None
