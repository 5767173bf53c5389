"""The decisions of the project store, pure: from a project snapshot to one update.

Each function looks at a ``Project`` read at some ``seq`` and returns a ``Change``:
the extra conditions, the fields to set and unset, and the events it produces.
The store applies it as one ``update_one`` guarded by that ``seq``; ``None`` means
there is nothing to do (a duplicate, a late poll, a clip already terminal).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus, final_project_status
from reelflow_common.messages import ClipUpdated, Event, ProjectFinished
from reelflow_common.mongo import Document
from reelflow_common.store.documents import clip_document, clip_from_document, event_document
from reelflow_common.store.models import Clip, Project

NOT_TERMINAL = (ClipStatus.QUEUED, ClipStatus.SUBMITTING, ClipStatus.PROCESSING)


@dataclass(frozen=True)
class Change:
    """One conditional update of a project document, decided at ``seq``."""

    seq: int
    new_seq: int
    conditions: Document = field(default_factory=dict)
    set: Document = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def filter(self, project_id: str) -> Document:
        """Matches the project only as it was decided on."""
        return {"_id": project_id, "seq": self.seq, **self.conditions}

    def update(self, *, event_log_size: int) -> Document:
        """The update document, appending the events to the log capped at ``event_log_size``."""
        update: Document = {"$set": self.set | {"seq": self.new_seq}}
        if self.unset:
            update["$unset"] = dict.fromkeys(self.unset, "")
        if self.events:
            stored = [event_document(event) for event in self.events]
            update["$push"] = {"events": {"$each": stored, "$slice": -event_log_size}}
        return update


@dataclass(frozen=True)
class _Move:
    """One clip before and after; a different ``task_uuid`` after means a replacement."""

    before: Clip
    after: Clip
    allowed_from: Collection[ClipStatus]


def _bucket(status: ClipStatus) -> str:
    if status is ClipStatus.SUCCESS:
        return "completed"
    if status in (ClipStatus.FAILED, ClipStatus.CANCELLED):
        return status.value
    return "pending"


def _recount(counts: Counts, before: ClipStatus, after: ClipStatus) -> Counts:
    values = counts.model_dump()
    values[_bucket(before)] -= 1
    values[_bucket(after)] += 1
    return Counts.model_validate(values)


def _set_clip_fields(prefix: str, before: Clip, after: Clip, into: Document) -> None:
    old, new = before.model_dump(exclude={"model"}), after.model_dump(exclude={"model"})
    for name, value in new.items():
        if value != old[name]:
            into[f"{prefix}.{name}"] = value.value if isinstance(value, ClipStatus) else value


def _apply(project: Project, moves: list[_Move], *, now: datetime) -> Change | None:
    if not moves:
        return None
    conditions: Document = {}
    to_set: Document = {}
    to_unset: list[str] = []
    events: list[Event] = []
    seq, counts = project.seq, project.counts
    for move in moves:
        before, after = move.before, move.after
        allowed = [status.value for status in move.allowed_from]
        conditions[f"clips.{before.task_uuid}.status"] = {"$in": allowed}
        replaced = before.task_uuid != after.task_uuid
        if replaced:
            to_unset.append(f"clips.{before.task_uuid}")
            to_set[f"clips.{after.task_uuid}"] = _clip_doc(after)
        else:
            _set_clip_fields(f"clips.{after.task_uuid}", before, after, to_set)
        counts = _recount(counts, before.status, after.status)
        if before.view() == after.view() and not replaced:
            continue  # queued -> submitting: not a public change, so no event and no seq
        seq += 1
        events.append(
            ClipUpdated(
                project_id=project.id,
                tenant_id=project.tenant_id,
                seq=seq,
                clip=after.view(),
                counts=counts,
                replaces_task_uuid=before.task_uuid if replaced else None,
                correlation_id=project.correlation_id,
                occurred_at=now,
            )
        )
    if counts != project.counts:
        to_set["counts"] = counts.model_dump()
    if project.status is ProjectStatus.GENERATING and counts.pending == 0:
        # The same update that ends the last clip ends the project, so however many
        # writers race, only the one whose update matched produces project.finished.
        seq += 1
        status = final_project_status(counts)
        to_set |= {"status": status.value, "finished_at": now}
        events.append(
            ProjectFinished(
                project_id=project.id,
                tenant_id=project.tenant_id,
                seq=seq,
                status=status,
                counts=counts,
                correlation_id=project.correlation_id,
                occurred_at=now,
            )
        )
    elif project.status is not ProjectStatus.GENERATING and counts.pending:
        to_set["status"] = ProjectStatus.GENERATING.value
        to_unset.append("finished_at")
    if events:
        to_set["updated_at"] = now
    return Change(project.seq, seq, conditions, to_set, to_unset, events)


def _clip_doc(clip: Clip) -> Document:
    doc = clip.model_dump(exclude={"model"})
    doc["status"] = clip.status.value
    return doc


def clip_change(
    project: Project,
    task_uuid: str,
    *,
    allowed_from: Collection[ClipStatus],
    to: ClipStatus,
    now: datetime,
    **fields: Any,
) -> Change | None:
    """Move one clip to ``to`` with ``fields``, if it is in one of ``allowed_from``."""
    clip = project.clip(task_uuid)
    if clip is None or clip.status not in allowed_from:
        return None
    after = clip.model_copy(update={"status": to, "updated_at": now, **fields})
    return _apply(project, [_Move(clip, after, allowed_from)], now=now)


def cancel_change(project: Project, *, now: datetime) -> Change | None:
    """Every clip not yet terminal becomes cancelled."""
    cancelled = {"status": ClipStatus.CANCELLED, "updated_at": now}
    moves = [
        _Move(clip, clip.model_copy(update=cancelled), NOT_TERMINAL)
        for clip in project.clips
        if not clip.status.is_terminal
    ]
    return _apply(project, moves, now=now)


def retry_change(
    project: Project,
    *,
    now: datetime,
    new_task_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Change | None:
    """Every failed clip is replaced by a new, queued task for the same scene."""
    moves = []
    for clip in project.clips:
        if clip.status is not ClipStatus.FAILED:
            continue
        doc = clip_document(new_task_uuid(), clip.scene_index, clip, now=now)
        moves.append(_Move(clip, clip_from_document(doc, model=project.model), [clip.status]))
    change = _apply(project, moves, now=now)
    if change is None:
        return None
    # The new clips are in the outbox until published; the sweeper's grace starts now.
    change.set.update(dispatched=False, undispatched_since=now)
    return change
