"""Every change of a project document, as a pure builder of ONE guarded update. No I/O.

A builder returns a :class:`Write`: the filter (the project, plus the guard on
the clip's state that makes the change happen at most once), the update (the
clip's new fields, the move between count buckets, ``seq`` and the events that
go with it) and how many events it pushes. :mod:`reelflow_common.store.writes`
applies it with one ``find_one_and_update``; a filter that matches nothing means
the change was made already, or can no longer be made, and nothing is written.

Nothing here needs a read first, except the API's rare operations (cancel,
retry) and the repair of a late result, which are built from a clip as read and
guarded on exactly what was read. Every transition's allowed from-states share
one count bucket, so the counts it moves are known without reading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from reelflow_common.accounting.ledger import Charge, Settlement
from reelflow_common.domain import (
    GIVEN_UP_CLIP_STATUSES,
    OPEN_CLIP_STATUSES,
    Bucket,
    ClipStatus,
    Counts,
    ProjectStatus,
    final_project_status,
)
from reelflow_common.messages import ClipView
from reelflow_common.mongo import Document
from reelflow_common.store.documents import (
    TASK_FIELDS,
    attempt_document,
    clip_path,
    pack_result,
    queued_clip_document,
)
from reelflow_common.store.eventlog import (
    attempt_event,
    clip_event,
    finish_event,
    packed,
    stored_event,
)
from reelflow_common.store.models import Attempt, ClipState, Lease, TaskResult, TaskSucceeded

#: the error code of a clip that ran out of time on our side (Runware never said it failed)
TIMED_OUT = "timedOut"


@dataclass(frozen=True)
class Write:
    """One guarded update of one project document; ``events`` is what it adds to ``seq``.

    ``settle``: where the ledger reservation this change settles is (the dotted path of
    a ``charge`` in the document as the write leaves it), and how (applied after the
    write, once, by :class:`~reelflow_common.store.ProjectStore`). ``settle_from``: where
    that charge is before the write, when the write moves it there (an attempt's video
    taken by the clip, a new attempt of the clip's own task); None: at ``settle``'s path.
    """

    filter: Document
    update: Document
    events: int = 0
    settle: tuple[str, Settlement] | None = None
    settle_from: str | None = None


@dataclass
class _Update:
    """An update document under construction."""

    set: Document = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict[str, float] = field(default_factory=dict)
    min: Document = field(default_factory=dict)
    pull: Document = field(default_factory=dict)
    events: list[Document] = field(default_factory=list)

    def move(self, from_bucket: Bucket, to_bucket: Bucket) -> None:
        if from_bucket != to_bucket:
            self.inc[f"counts.{from_bucket}"] = self.inc.get(f"counts.{from_bucket}", 0) - 1
            self.inc[f"counts.{to_bucket}"] = self.inc.get(f"counts.{to_bucket}", 0) + 1

    def cost(self, cost: float | None) -> None:
        if cost is None:
            self.inc["cost.unknown"] = self.inc.get("cost.unknown", 0) + 1
        else:
            self.inc["cost.usd"] = self.inc.get("cost.usd", 0) + cost
            self.inc["cost.known"] = self.inc.get("cost.known", 0) + 1

    def build(
        self,
        filter_: Document,
        *,
        now: datetime,
        log_size: int,
        settle: tuple[str, Settlement] | None = None,
        settle_from: str | None = None,
    ) -> Write:
        update: Document = {}
        to_set = dict(self.set)
        inc = dict(self.inc)
        if self.events:
            # The invariant of the log: seq grows by exactly the number of events pushed.
            inc["seq"] = len(self.events)
            pushed = [packed(event) for event in self.events]
            update["$push"] = {"events": {"$each": pushed, "$slice": -log_size}}
            to_set["updated_at"] = now
        if to_set:
            update["$set"] = to_set
        if self.unset:
            update["$unset"] = dict.fromkeys(self.unset, "")
        if inc:
            update["$inc"] = inc
        if self.min:
            update["$min"] = self.min
        if self.pull:
            update["$pull"] = self.pull
        return Write(filter_, update, len(self.events), settle, settle_from)


def _guard(
    project_id: str,
    scene_index: int,
    *,
    tenant_id: str | None = None,
    **clip_fields: Any,
) -> Document:
    path = clip_path(scene_index)
    found: Document = {"_id": project_id}
    if tenant_id is not None:
        found["tenant_id"] = tenant_id
    for name, value in clip_fields.items():
        found[f"{path}.{name.replace('__', '.')}"] = value
    return found


def _set_clip(update: _Update, scene_index: int, **fields: Any) -> None:
    path = clip_path(scene_index)
    for name, value in fields.items():
        update.set[f"{path}.{name}"] = value.value if isinstance(value, ClipStatus) else value


def _charge_of(scene_index: int, task_uuid: str | None = None) -> str:
    """Where the reservation of the clip's current task (or of its attempt ``task_uuid``) is."""
    path = clip_path(scene_index)
    return f"{path}.charge" if task_uuid is None else f"{path}.attempts.{task_uuid}.charge"


def task_end(
    task_uuid: str, status: ClipStatus, cost: float | None, *, late: bool = False
) -> Settlement:
    """What a task's recorded end does to its reservation (``<charge>:<task>``, once).

    A task's end frees its reservation (one fewer in flight, the estimate released)
    and, with a video, bills what it cost. A video that came after its task had been
    given up on (its reservation freed as a failure) is billed on its own, under
    ``<task>:late``.
    """
    if late:
        return Settlement(key=f"{task_uuid}:late", ended=False, billed=True, cost=cost)
    return Settlement(key=task_uuid, ended=True, billed=status is ClipStatus.SUCCESS, cost=cost)


def settlements(clip: ClipState, task_uuid: str) -> list[tuple[Charge, Settlement]]:
    """What the recorded ends of ``task_uuid`` settle, as the clip says: the repair path
    settles them again after a crash (each one once: a no-op if it was)."""
    found: list[tuple[Charge, Settlement]] = []
    if clip.task_uuid == task_uuid and clip.status.is_terminal and clip.charge is not None:
        ended = task_end(task_uuid, clip.status, clip.cost, late=clip.late)
        if _taken_by_old_code(clip):
            # What that code settled when the clip took the video (the same key: a no-op).
            ended = Settlement(key=f"{task_uuid}:late", ended=True, billed=True, cost=clip.cost)
        found.append((clip.charge, ended))
    attempt = clip.attempts.get(task_uuid)
    if (
        attempt is not None
        and task_uuid == clip.task_uuid
        and attempt.status is not ClipStatus.SUCCESS
        and (not clip.moved_charge(task_uuid) or clip.charge_in_flight(task_uuid))
    ):
        # The clip's own task followed after it was given up on: the clip's end (above) freed
        # its reservation, and only a video that came after all is billed (``<task>:late``);
        # or the cancel moved the clip's charge here and the task has not ended yet.
        attempt = None
    if (
        attempt is not None
        and attempt.late
        and attempt.charge is not None
        and clip.moved_charge(task_uuid)
    ):
        # A video after the end that freed the charge the cancel moved here: that end first.
        found.append((attempt.charge, task_end(task_uuid, ClipStatus.FAILED, None)))
    if attempt is not None and attempt.status.is_terminal:
        end = _attempt_end(clip, task_uuid, attempt)
        charge = None if end is None else (clip.charge if end[0] else attempt.charge)
        if end is not None and charge is not None:
            found.append((charge, end[1]))
    return found


def _taken_by_old_code(clip: ClipState) -> bool:
    """The clip took an earlier task's video before attempts held charges: it kept the
    charge of the task it replaced, which is in ``attempts`` without one (queued later
    than the clip's own task, as only a replaced task can be)."""
    if clip.status is not ClipStatus.SUCCESS or clip.late or clip.charge is None:
        return False
    mine = clip.queued_at
    return any(
        attempt.charge is None
        and mine is not None
        and attempt.queued_at is not None
        and attempt.queued_at > mine
        for attempt in clip.attempts.values()
    )


def _still_pending(
    update: _Update, view: ClipView, *, now: datetime, correlation_id: str | None
) -> None:
    """The clip changed but stays pending: one ``clip.updated``, the counts as they were."""
    update.events.append(
        clip_event(
            view,
            from_bucket="pending",
            to_bucket="pending",
            occurred_at=now,
            correlation_id=correlation_id,
        )
    )


#: the earliest success whose video the copy sweep has not seen stored yet (set by every
#: success, ``$min``; moved on by each sweep's claim, unset once nothing is left to copy)
COPY_DUE = "copy_due_at"
#: a lower bound of the lease ends of the project's open attempts (tasks an earlier task's
#: video replaced, still followed): the reconciler's index for them (``attempts_due``)
ATTEMPTS_DUE = "attempts_due_at"


# --- the hot path: a chain moves its clip ---------------------------------------


def to_processing(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    *,
    token: str | None,
    now: datetime,
    lease_until: datetime,
    correlation_id: str | None,
    log_size: int,
    new_token: str | None = None,
) -> Write:
    """Runware holds the queued task: the chain of ``token`` records it and extends its lease.

    The reconciler, finding a queued clip Runware already has, takes the clip over
    under ``new_token`` in the same update (``token`` None: a clip without a lease).
    """
    update = _Update()
    lease = {"token": new_token or token, "until": lease_until}
    # The watch starts now: a clip without ``watched_since`` is watched since its submit.
    _set_clip(update, scene_index, status=ClipStatus.PROCESSING, submitted_at=now, lease=lease)
    view = ClipView(
        task_uuid=task_uuid,
        scene_index=scene_index,
        status=ClipStatus.PROCESSING,
        submitted_at=now,
    )
    _still_pending(update, view, now=now, correlation_id=correlation_id)
    if new_token is not None:
        update.min["due_at"] = lease_until
    # An earlier task's progress, if any; the queueing's watch (a clip written before); why
    # it waited for Runware, which has it now.
    update.unset += [
        f"{clip_path(scene_index)}.{name}" for name in ("progress", "watched_since", "waiting")
    ]
    guard = _guard(
        project_id,
        scene_index,
        status=ClipStatus.QUEUED.value,
        task_uuid=task_uuid,
        lease__token=token,
    )
    return update.build(guard, now=now, log_size=log_size)


def to_terminal(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    result: TaskResult,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
    submitted_at: datetime | None = None,
    token: str | None = None,
    statuses: Sequence[ClipStatus] = OPEN_CLIP_STATUSES,
    only_clip: bool = False,
) -> Write:
    """The clip's current task is over: success with its video, or failed with a reason.

    Recorded whatever chain learnt it (Runware's answer is the truth) unless
    ``token`` is given: a submit chain fails a clip only while it still holds it.
    ``only_clip``: the project has this one clip, so its end is the project's: the same
    update finishes it (as :func:`finish` would after it), guarded on the project having
    one clip, pending, and still generating; a project of more clips leaves it unapplied.
    """
    update = _Update()
    fields: dict[str, Any] = {}
    if isinstance(result, TaskSucceeded):
        status = ClipStatus.SUCCESS
        fields |= {
            "video_url": result.video_url,
            "video_uuid": result.video_uuid,
            "cost": result.cost,
        }
        update.cost(result.cost)
        update.min[COPY_DUE] = now
        error = None
    else:
        status = ClipStatus.FAILED
        error = {"code": result.code, "message": result.message}
    _set_clip(update, scene_index, status=status, result=pack_result(completed_at=now, **fields))
    if error is not None:
        _set_clip(update, scene_index, error=error)
    update.unset += [f"{clip_path(scene_index)}.{name}" for name in ("lease", "waiting")]
    update.move("pending", status.bucket)
    view = ClipView(
        task_uuid=task_uuid,
        scene_index=scene_index,
        status=status,
        video_url=fields.get("video_url"),
        cost=fields.get("cost"),
        error=error,
        submitted_at=submitted_at,
        completed_at=now,
    )
    update.events.append(
        clip_event(
            view,
            from_bucket="pending",
            to_bucket=status.bucket,
            occurred_at=now,
            correlation_id=correlation_id,
        )
    )
    allowed = [status.value for status in statuses]
    guard = _guard(project_id, scene_index, status={"$in": allowed}, task_uuid=task_uuid)
    if token is not None:
        guard[f"{clip_path(scene_index)}.lease.token"] = token
    if only_clip:
        # The clip is open, so it is the one pending clip: the counts after this update.
        counts = Counts(total_clips=1, completed=0, pending=1, failed=0).moved(
            "pending", status.bucket
        )
        project_status = final_project_status(counts)
        update.set |= {"status": project_status.value, "finished_at": now}
        # No correlation id of its own: the project's, as the finisher's event has.
        update.events.append(finish_event(project_status, occurred_at=now, correlation_id=None))
        guard |= {
            "counts.total_clips": 1,
            "counts.pending": 1,
            "status": ProjectStatus.GENERATING.value,
        }
    settle = task_end(task_uuid, status, fields.get("cost"))
    return update.build(guard, now=now, log_size=log_size, settle=(_charge_of(scene_index), settle))


def progress(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    value: int,
    *,
    submitted_at: datetime | None,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write:
    """Runware's progress of the processing task, stored only if it is ahead of the stored one.

    Progress never goes back on the clip: a lower or equal value (a late check, a
    task that slipped) matches nothing and writes nothing.
    """
    update = _Update()
    _set_clip(update, scene_index, progress=value)
    view = ClipView(
        task_uuid=task_uuid,
        scene_index=scene_index,
        status=ClipStatus.PROCESSING,
        submitted_at=submitted_at,
        progress=value,
    )
    _still_pending(update, view, now=now, correlation_id=correlation_id)
    guard = _guard(
        project_id,
        scene_index,
        status=ClipStatus.PROCESSING.value,
        task_uuid=task_uuid,
        progress={"$not": {"$gte": value}},
    )
    return update.build(guard, now=now, log_size=log_size)


def waiting(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    reason: dict[str, str],
    *,
    token: str,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write:
    """Why the queued clip is not at Runware yet (an outage), for as long as it stays queued.

    Only the chain of ``token`` writes it, and only while the clip is queued; reaching
    Runware (``processing``) or an end clears it.
    """
    update = _Update()
    _set_clip(update, scene_index, waiting=reason)
    view = ClipView(
        task_uuid=task_uuid, scene_index=scene_index, status=ClipStatus.QUEUED, waiting=reason
    )
    _still_pending(update, view, now=now, correlation_id=correlation_id)
    guard = _guard(
        project_id,
        scene_index,
        status=ClipStatus.QUEUED.value,
        task_uuid=task_uuid,
        lease__token=token,
    )
    return update.build(guard, now=now, log_size=log_size)


def renew_lease(
    project_id: str,
    scene_index: int,
    *,
    token: str,
    until_was: datetime,
    until: datetime,
    replaced_task: str | None = None,
) -> Write:
    """The chain of ``token`` goes on: its lease, which ran to ``until_was``, now runs to ``until``.

    Guarded on both, so a chain that forked (a message handled twice after a lost ack
    carries the same token) stops at its first renewal: the other copy moved ``until``
    first. Matches nothing either for a stale chain, or once the lease was expired for
    the reconciler. A renewal only ever pushes a lease later, so ``due_at`` stays right.
    ``replaced_task``: the lease is that of a task an earlier task's video replaced,
    kept in its ``attempts`` entry until the task ends.
    """
    path = clip_path(scene_index)
    if replaced_task is not None:
        path = f"{path}.attempts.{replaced_task}"
    guard = {"_id": project_id, f"{path}.lease.token": token, f"{path}.lease.until": until_was}
    return Write(guard, {"$set": {f"{path}.lease.until": until}})


def expire_lease(
    project_id: str,
    scene_index: int,
    *,
    token: str,
    now: datetime,
    replaced_task: str | None = None,
) -> Write:
    """The chain of ``token`` could not be started: let the reconciler take the clip at once.

    ``replaced_task``: the chain follows that attempt (its lease is in ``attempts``).
    """
    path, due = clip_path(scene_index), "due_at"
    if replaced_task is not None:
        path, due = f"{path}.attempts.{replaced_task}", ATTEMPTS_DUE
    return Write(
        {"_id": project_id, f"{path}.lease.token": token},
        {"$set": {f"{path}.lease.until": now}, "$min": {due: now}},
    )


def finish(
    project_id: str,
    counts: Counts,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write:
    """End a project whose last open clip has ended, as the counts ``counts`` show.

    Guarded on every count (dotted fields: an embedded-document equality would
    depend on field order), so of all writers that saw pending reach zero only
    one finishes, and none does after the counts moved again.
    """
    status = final_project_status(counts)
    update = _Update()
    update.set |= {"status": status.value, "finished_at": now}
    update.events.append(finish_event(status, occurred_at=now, correlation_id=correlation_id))
    guard = {
        "_id": project_id,
        "status": ProjectStatus.GENERATING.value,
        "counts.pending": 0,
        "counts.completed": counts.completed,
        "counts.failed": counts.failed,
        "counts.cancelled": counts.cancelled,
    }
    return update.build(guard, now=now, log_size=log_size)


# --- the API's operations: built from the clip as read --------------------------


def cancel(
    project_id: str,
    tenant_id: str,
    clip: ClipState,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
    lease_as_read: bool = True,
    follow_token: str | None = None,
) -> Write:
    """An open clip becomes cancelled (one update per clip: cancel is rare), guarded on the
    clip as read.

    Cancelling does not stop Runware: a processing clip's task goes on and is billed if it
    ends with a video. Its lease moves to ``attempts.T`` (the clip's own task), so its
    chain renews it there and goes on checking, and the attempts reconciler re-arms it if
    that chain is lost; its end is recorded in that attempt. Guarded on the lease as read
    (``lease_as_read``: a renewal or a re-arm meanwhile makes the caller read again, as a
    queued clip that became processing does); without it, on the caller's last try, the
    lease as read moves all the same: a live chain under a later lease then stops at its
    renewal and the reconciler re-arms the attempt from the earlier end. A processing clip
    without a lease (no chain follows it: its lease was lost, or written by an older
    release) is followed all the same: ``attempts.T`` gets a lease of ``follow_token`` that
    has run out already, which the attempts reconciler re-arms at its next pass.

    A followed task keeps its reservation: the clip's charge moves to ``attempts.T`` with the
    lease, in flight until the follow's end settles it (``<charge>:T``, as any task's end:
    billed on a video, freed on a failure), and the cancel settles nothing.

    So does a queued clip's task that holds a charge: Runware may still take it (a first
    submit that reads nothing, a submit on its way, an earlier one unanswered), and only its
    submit chain can tell. It moves to ``attempts.T`` as a task an earlier video replaced
    does (status ``queued``, the chain's lease as read, the charge; a clip without a lease
    gets a run-out one of ``follow_token`` for the attempts reconciler): the chain marks it
    ``processing`` and follows it if Runware took it, or ends it ``failed`` (freeing the
    charge) if it never sent it or Runware does not have it past the grace. A queued clip
    without a charge (its tenant has no ledger) is cancelled as before: nothing to hold.
    """
    update = _Update()
    path = clip_path(clip.scene_index)
    _set_clip(update, clip.scene_index, status=ClipStatus.CANCELLED)
    update.unset.append(f"{path}.lease")
    update.move("pending", "cancelled")
    view = clip.model_copy(update={"status": ClipStatus.CANCELLED}).view(with_attempts=False)
    update.events.append(
        clip_event(
            view,
            from_bucket="pending",
            to_bucket="cancelled",
            occurred_at=now,
            correlation_id=correlation_id,
        )
    )
    guard = _guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=clip.status.value,
        task_uuid=clip.task_uuid,
    )
    lease = clip.lease
    # A queued clip's task is held only for its charge: without one there is nothing to hold.
    held = clip.status is ClipStatus.PROCESSING or (
        clip.status is ClipStatus.QUEUED
        and clip.charge is not None
        and clip.task_uuid not in clip.attempts
    )
    if held and lease_as_read:
        if lease is None:
            guard[f"{path}.lease"] = {"$exists": False}  # a re-arm since: read again
        else:
            guard[f"{path}.lease.token"] = lease.token
            guard[f"{path}.lease.until"] = lease.until
    if held and lease is None and follow_token is not None:
        lease = Lease(token=follow_token, until=now)  # run out: no chain holds it
    moved = False
    if clip.status is ClipStatus.PROCESSING and lease is not None:
        moved = _follow_cancelled(update, guard, clip, lease, now=now)
    elif held and lease is not None:
        moved = _hold_queued(update, guard, clip, lease, now=now)
    if moved:
        # Its charge went with its task: in flight until the follow's end settles it.
        update.unset.append(f"{path}.charge")
        return update.build(guard, now=now, log_size=log_size)
    settle = task_end(clip.task_uuid, ClipStatus.CANCELLED, None)
    return update.build(
        guard, now=now, log_size=log_size, settle=(_charge_of(clip.scene_index), settle)
    )


def _follow_cancelled(
    update: _Update, guard: Document, clip: ClipState, lease: Lease, *, now: datetime
) -> bool:
    """The cancelled processing clip's task stays followed under ``lease`` in ``attempts.T``,
    and its charge moves there with it; whether it did (the clip has one, and the entry
    neither holds the task's video nor that very charge, freed already).

    A new entry where none is. An entry there already, on a processing clip, is a stray an
    old api's rewatch left beside the clip's chain (this release's rewatch takes the task
    back from it): unless it holds the task's video, the clip's chain, the live one, follows
    the task from it — its lease moves in (the stray's chain stops at its renewal), the
    watch starts no earlier than the clip's, and an end recorded there before that rewatch
    is no last word any more. Guarded as read (its status, its lease or that it has none,
    its ``end_recorded``), so a repair that drops it meanwhile makes the caller read again.
    """
    prefix = f"{clip_path(clip.scene_index)}.attempts.{clip.task_uuid}"
    attempt = clip.attempts.get(clip.task_uuid)
    charge = clip.charge
    if attempt is None:
        followed = clip.model_copy(update={"status": ClipStatus.CANCELLED, "lease": lease})
        update.set[prefix] = attempt_document(followed.as_attempt())
        guard[prefix] = {"$exists": False}
    else:
        guard[f"{prefix}.status"] = attempt.status.value
        if attempt.lease is not None:
            guard[f"{prefix}.lease.token"] = attempt.lease.token
            guard[f"{prefix}.lease.until"] = attempt.lease.until
        else:
            guard[f"{prefix}.lease"] = {"$exists": False}
        if attempt.status is ClipStatus.SUCCESS:
            if attempt.lease is not None:
                update.min[ATTEMPTS_DUE] = attempt.lease.until  # re-armed if its chain is lost
            return False
        guard[f"{prefix}.end_recorded"] = True if attempt.end_recorded else {"$ne": True}
        if attempt.end_recorded:
            update.unset.append(f"{prefix}.end_recorded")
        # It stands for the cancelled clip's followed task now, as a new entry would.
        update.set[f"{prefix}.status"] = ClipStatus.CANCELLED.value
        update.set[f"{prefix}.lease"] = lease.model_dump()
        start, since = clip.watch_start(), attempt.watch_start()
        if start is not None and (since is None or start > since):
            update.set[f"{prefix}.watched_since"] = start
        if charge is not None and attempt.charge is not None and attempt.charge.id == charge.id:
            # The stray's own, freed by its end (a rewatch without a new reservation): it stays
            # on the clip, whose cancel settles it as before (a no-op).
            charge = None
        elif charge is not None:
            update.set[f"{prefix}.charge"] = charge.model_dump()
    # Below the claim of an attempts pass under way, whose release then matches nothing.
    update.min[ATTEMPTS_DUE] = min(now, lease.until)
    return charge is not None


def _hold_queued(
    update: _Update, guard: Document, clip: ClipState, lease: Lease, *, now: datetime
) -> bool:
    """The cancelled queued clip's task waits in ``attempts.T`` for its submit chain's word,
    under that chain's ``lease``, with the clip's charge (a new entry: guarded on none)."""
    prefix = f"{clip_path(clip.scene_index)}.attempts.{clip.task_uuid}"
    update.set[prefix] = attempt_document(clip.model_copy(update={"lease": lease}).as_attempt())
    guard[prefix] = {"$exists": False}
    # Below the claim of an attempts pass under way, whose release then matches nothing.
    update.min[ATTEMPTS_DUE] = min(now, lease.until)
    return True


def never_submitted(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    error: dict[str, str],
    *,
    token: str,
    now: datetime,
) -> Write:
    """The submit chain of ``token`` ends the queued task a cancel moved to ``attempts.T``
    (``ClipState.awaits_submit_word``): it never sent it, or Runware does not have it past
    the grace. The task's end frees its charge (``<charge>:T``). No read: guarded on the
    entry being queued under this chain's lease with no submit recorded, so an entry another
    chain marked processing (Runware took it), re-armed or ended, or one a chain under
    another token found Runware took (:func:`held_task_submitted`), writes nothing. History
    (no event).
    """
    prefix = f"{clip_path(scene_index)}.attempts.{task_uuid}"
    guard = {
        "_id": project_id,
        f"{clip_path(scene_index)}.task_uuid": task_uuid,
        f"{prefix}.status": ClipStatus.QUEUED.value,
        f"{prefix}.lease.token": token,
        f"{prefix}.submitted_at": None,  # null or absent: no chain found it at Runware
    }
    update = {
        "$set": {
            f"{prefix}.status": ClipStatus.FAILED.value,
            f"{prefix}.error": error,
            f"{prefix}.completed_at": now,
        },
        "$unset": {f"{prefix}.lease": ""},
    }
    settle = task_end(task_uuid, ClipStatus.FAILED, None)
    return Write(guard, update, settle=(_charge_of(scene_index, task_uuid), settle))


def held_task_submitted(
    project_id: str, clip: ClipState, task_uuid: str, *, now: datetime
) -> Write | None:
    """Runware took the queued task a cancel holds in ``attempts.T`` for its submit chain's word
    (``ClipState.awaits_submit_word``), through a chain that does not hold the entry's lease
    (the cancel's last try moved a lease a re-arm had replaced, or a re-arm came since): the
    entry records when (``submitted_at``), and stays its lease holder's to follow.

    From then on the holder's word that Runware never got the task (``never_submitted``)
    matches nothing, and the attempts reconciler counts Runware's visibility grace from this
    submit, not from a lease end that may be long past, so the task is followed and its
    charge held until its end settles it. One write, guarded on the entry still queued with
    no submit recorded (the first one stays: Runware had the task from then). None when
    one is recorded already. History (no event).
    """
    attempt = clip.attempts.get(task_uuid)
    if (
        attempt is None
        or not clip.awaits_submit_word(task_uuid)
        or attempt.submitted_at is not None
    ):
        return None
    prefix = f"{clip_path(clip.scene_index)}.attempts.{task_uuid}"
    guard = {
        "_id": project_id,
        f"{clip_path(clip.scene_index)}.task_uuid": task_uuid,
        f"{prefix}.status": ClipStatus.QUEUED.value,
        f"{prefix}.submitted_at": None,
    }
    return Write(guard, {"$set": {f"{prefix}.submitted_at": now}})


def follow_given_up(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    *,
    token: str,
    now: datetime,
    until: datetime,
) -> Write | None:
    """Runware took a task the clip had given up on: its chain follows it under a lease in
    ``attempts.T``, which the attempts reconciler re-arms should that chain be lost.

    ``task_uuid`` is the clip's own task (the clip was cancelled or failed while its submit
    was on its way: a new entry, as the clip was) or an earlier task whose attempt had ended
    (cancelled or failed: its lease and watch, and a submit now if it has none). History,
    no event; its end, recorded by the repair path, bills a video once (late: the task's
    reservation was freed when it was given up on). None when nothing is to be followed:
    the task is the open clip's (its own chain follows it), its attempt still holds a lease
    (another chain follows it), has its video, or the end of a follow was recorded
    (``end_recorded``: recorded once).
    """
    path = clip_path(clip.scene_index)
    prefix = f"{path}.attempts.{task_uuid}"
    attempt = clip.attempts.get(task_uuid)
    lease = {"token": token, "until": until}
    if attempt is None:
        if task_uuid != clip.task_uuid or clip.status not in GIVEN_UP_CLIP_STATUSES:
            return None
        # Its watch starts now, as its first chain's check says (the ceiling of a re-armed
        # chain counts from here too).
        followed = clip.as_attempt().model_copy(
            update={
                "submitted_at": clip.submitted_at or now,
                "watched_since": now,
                "lease": Lease(**lease),
            }
        )
        guard = _guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid)
        guard[prefix] = {"$exists": False}
        to_set: Document = {prefix: attempt_document(followed)}
    elif (
        attempt.status in GIVEN_UP_CLIP_STATUSES
        and attempt.lease is None
        and not attempt.end_recorded
    ):
        # Field by field: what the attempt recorded stays as it is. Never once its end was
        # recorded (a followed task's failure): that end is the task's last word.
        guard = {"_id": project_id, f"{prefix}.status": attempt.status.value}
        guard[f"{prefix}.lease"] = {"$exists": False}
        guard[f"{prefix}.end_recorded"] = {"$ne": True}
        to_set = {f"{prefix}.lease": lease, f"{prefix}.watched_since": now}
        if attempt.submitted_at is None:
            # Ended while still queued (a replaced task): Runware's grace and the re-armed
            # chain's ceiling count from the submit found now, as for a new entry.
            guard[f"{prefix}.submitted_at"] = None  # null or absent, as read
            to_set[f"{prefix}.submitted_at"] = now
    else:
        return None
    return Write(guard, {"$set": to_set, "$min": {ATTEMPTS_DUE: now}})


def _reopen(update: _Update, *, lease_until: datetime) -> None:
    update.set["status"] = ProjectStatus.GENERATING.value
    update.unset.append("finished_at")
    update.min["due_at"] = lease_until


def retry_with_new_task(
    project_id: str,
    tenant_id: str,
    clip: ClipState,
    *,
    new_task_uuid: str,
    token: str,
    now: datetime,
    lease_until: datetime,
    correlation_id: str | None,
    log_size: int,
    charge: Charge | None = None,
) -> Write:
    """A clip whose task Runware failed gets a new task; the failed one moves to ``attempts``.

    ``charge``: the new task's reservation on the tenant's ledger, if it has one.
    """
    path = clip_path(clip.scene_index)
    update = _Update()
    fresh = queued_clip_document(
        new_task_uuid, token=token, lease_until=lease_until, queued_at=now, charge=charge
    )
    for name, value in fresh.items():
        update.set[f"{path}.{name}"] = value
    guard = _guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    _keep_as_attempt(update, guard, clip)
    # Nothing of the failed task stays on the clip: its end, its progress, and a reservation
    # the new task does not have (its tenant's limits went away) that would be settled twice.
    update.unset += [f"{path}.{name}" for name in TASK_FIELDS if name not in fresh]
    update.move("failed", "pending")
    _reopen(update, lease_until=lease_until)
    view = ClipView(task_uuid=new_task_uuid, scene_index=clip.scene_index, status=ClipStatus.QUEUED)
    update.events.append(
        clip_event(
            view,
            from_bucket="failed",
            to_bucket="pending",
            occurred_at=now,
            correlation_id=correlation_id,
            replaces_task_uuid=clip.task_uuid,
        )
    )
    return update.build(_no_late_video_since(guard, clip), now=now, log_size=log_size)


def _keep_as_attempt(update: _Update, guard: Document, clip: ClipState) -> None:
    """The clip's current task moves to ``attempts`` as the clip leaves it, unless it is there
    already: followed after it was given up on (its chain's lease) or ended so; that entry
    is kept as it is, never overwritten whole. The whole entry is written only where none
    is (``guard``): one a concurrent writer added since the read (a given-up task found at
    Runware) makes the write match nothing, and the caller reads again."""
    if clip.task_uuid not in clip.attempts:
        path = f"{clip_path(clip.scene_index)}.attempts.{clip.task_uuid}"
        update.set[path] = attempt_document(clip.as_attempt())
        guard[path] = {"$exists": False}


def _no_late_video_since(guard: Document, clip: ClipState) -> Document:
    """``guard`` and the clip's tasks as read: a late video recorded since (in ``attempts``)
    makes a retry that would buy or watch again match nothing; the next retry takes it."""
    path = clip_path(clip.scene_index)
    for task_uuid, attempt in clip.attempts.items():
        guard[f"{path}.attempts.{task_uuid}.status"] = attempt.status.value
    if clip.task_uuid not in clip.attempts:
        guard[f"{path}.attempts.{clip.task_uuid}"] = {"$exists": False}
    return guard


def rewatch(
    project_id: str,
    tenant_id: str,
    clip: ClipState,
    *,
    token: str,
    now: datetime,
    lease_until: datetime,
    correlation_id: str | None,
    log_size: int,
    charge: Charge | None = None,
) -> Write:
    """A failed clip is watched again: same task, fresh lease and ceiling. Either it timed out
    on our side (Runware never said the task failed), or Runware runs its task after all
    (:meth:`ClipState.runs_at_runware`: found there after the clip failed, followed in
    ``attempts``). Either way Runware may still finish it (and bill it): buying a second
    task would pay twice.
    """
    update = _Update()
    followed = clip.runs_at_runware()
    submitted_at = clip.submitted_at or (followed.submitted_at if followed else None)
    _set_clip(
        update,
        clip.scene_index,
        status=ClipStatus.PROCESSING,
        watched_since=now,
        lease={"token": token, "until": lease_until},
    )
    path = clip_path(clip.scene_index)
    if submitted_at != clip.submitted_at:
        # Failed before its own chain saw the submit: the follow's is the task's.
        update.set[f"{path}.submitted_at"] = submitted_at
    update.unset += [f"{path}.{name}" for name in ("error", "result", "completed_at")]
    if clip.task_uuid in clip.attempts:
        # Followed after it was given up on: the clip's own chain follows the task again, and
        # the attempt's chain stops at its next renewal (one task, one chain).
        update.unset.append(f"{path}.attempts.{clip.task_uuid}")
    if charge is not None:
        update.set[f"{path}.charge"] = charge.model_dump()
    elif clip.charge is not None:
        # The timed-out end freed it; a retry that reserved nothing (the tenant's limits went
        # away) must not leave it there for a later end or cancel to settle a second time.
        update.unset.append(f"{path}.charge")
    update.move("failed", "pending")
    _reopen(update, lease_until=lease_until)
    view = ClipView(
        task_uuid=clip.task_uuid,
        scene_index=clip.scene_index,
        status=ClipStatus.PROCESSING,
        submitted_at=submitted_at,
    )
    update.events.append(
        clip_event(
            view,
            from_bucket="failed",
            to_bucket="pending",
            occurred_at=now,
            correlation_id=correlation_id,
        )
    )
    guard = _guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    if followed is not None:
        # Still followed as read: an end of the task recorded since makes this match nothing.
        guard[f"{path}.attempts.{clip.task_uuid}.lease"] = {"$exists": True}
        guard[f"{path}.attempts.{clip.task_uuid}.end_recorded"] = {"$ne": True}
    else:
        guard[f"{path}.error.code"] = TIMED_OUT
    return update.build(_no_late_video_since(guard, clip), now=now, log_size=log_size)


# --- the reconciler ---------------------------------------------------------------


def rearm(
    project_id: str,
    clip: ClipState,
    *,
    new_token: str,
    until: datetime,
) -> Write:
    """Give an open clip whose lease expired a new chain: matches only the clip as read.

    Guarded on the lease as read, so of two reconcilers that read the same clip only
    one re-arms it, and a chain that renewed in between keeps the clip.
    """
    path = clip_path(clip.scene_index)
    guard = _guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid)
    if clip.lease is None:
        guard[f"{path}.lease"] = {"$exists": False}
    else:
        # The token and its end as read: a chain that renewed meanwhile is alive, keep it.
        guard[f"{path}.lease.token"] = clip.lease.token
        guard[f"{path}.lease.until"] = clip.lease.until
    update = {
        "$set": {f"{path}.lease": {"token": new_token, "until": until}},
        "$min": {"due_at": until},
    }
    return Write(guard, update)


def claim(project_id: str, *, due_at: datetime, until: datetime) -> Write:
    """Take a due project for one reconciler pass: only the reconciler that read ``due_at`` wins.

    ``until`` is when another reconciler may take it, should this one die on the way.
    """
    return Write(
        {"_id": project_id, "status": ProjectStatus.GENERATING.value, "due_at": due_at},
        {"$set": {"due_at": until}},
    )


def release(project_id: str, *, claimed: datetime, due_at: datetime) -> Write:
    """After a pass: ``due_at`` is the real earliest lease, unless a writer lowered it meanwhile."""
    return Write({"_id": project_id, "due_at": claimed}, {"$set": {"due_at": due_at}})


def rearm_attempt(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    lease: Lease,
    *,
    new_token: str,
    until: datetime,
) -> Write:
    """Give a replaced task whose chain's lease (in its attempt) ran out a new chain.

    Guarded on that lease as read, as :func:`rearm` is: a chain that renewed meanwhile
    keeps the attempt, and the old chain's renewal matches nothing from now on.
    """
    prefix = f"{clip_path(scene_index)}.attempts.{task_uuid}"
    guard = {
        "_id": project_id,
        f"{prefix}.lease.token": lease.token,
        f"{prefix}.lease.until": lease.until,
    }
    return Write(guard, {"$set": {f"{prefix}.lease": {"token": new_token, "until": until}}})


def drop_stray_attempt(project_id: str, clip: ClipState, task_uuid: str) -> Write | None:
    """Remove a leased ``attempts.T`` of the clip's own task from a clip not given up on.

    Such an entry is a stray (left by a release before this one, see ARCHITECTURE.md,
    "Upgrades"): the clip itself stands for the task, and its own chain follows it (one
    task, one chain), so the attempt's chain must not. Guarded on the clip and that lease
    as read; never an entry with a video. None when the entry is no stray.
    """
    attempt = clip.attempts.get(task_uuid)
    if attempt is None or attempt.lease is None or not clip.stray_attempt(task_uuid):
        return None
    prefix = f"{clip_path(clip.scene_index)}.attempts.{task_uuid}"
    guard = _guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid)
    guard[f"{prefix}.lease.token"] = attempt.lease.token
    guard[f"{prefix}.lease.until"] = attempt.lease.until
    return Write(guard, {"$unset": {prefix: ""}})


def claim_attempts(project_id: str, *, due_at: datetime, until: datetime) -> Write:
    """Take a project whose open attempts are due for one pass, as :func:`claim` does."""
    return Write({"_id": project_id, ATTEMPTS_DUE: due_at}, {"$set": {ATTEMPTS_DUE: until}})


def release_attempts(project_id: str, *, claimed: datetime, due_at: datetime | None) -> Write:
    """After a pass over the attempts: due next at ``due_at`` (None: no attempt is open).

    Conditional on the claim's value: a write that moved a lease into ``attempts``
    meanwhile lowered it (to its own time, below the claim), and the next pass sees it.
    """
    if due_at is None:
        return Write({"_id": project_id, ATTEMPTS_DUE: claimed}, {"$unset": {ATTEMPTS_DUE: ""}})
    return Write({"_id": project_id, ATTEMPTS_DUE: claimed}, {"$set": {ATTEMPTS_DUE: due_at}})


# --- late results: a result for a task that is not the clip's open current task ----


def late_result(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    result: TaskResult,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write | None:
    """What a terminal result of a task the clip does not stand for (any more) changes.

    - A video of an earlier task while the clip is still open: the clip becomes a
      success with that task as its current one, and the task it replaces moves to
      ``attempts`` (if it is still running there, its chain records its end).
    - Otherwise the task's ``attempts`` entry records the end, if it was open, or a
      video that came after the task had been given up on: a terminal clip never
      changes. So does a video of a failed or cancelled clip's own task (under its
      own task UUID in ``attempts``): Runware billed it, and a retry takes it.
    - A task followed after it was given up on (a lease in its attempt: a cancelled
      processing clip's, or one Runware took after the cancel) records either end
      there, and its chain is done.

    None when there is nothing to record. Guarded on the clip as read.
    """
    attempt = clip.attempts.get(task_uuid)
    video = result if isinstance(result, TaskSucceeded) else None
    new = task_uuid == clip.task_uuid and attempt is None
    if task_uuid == clip.task_uuid and clip.status not in GIVEN_UP_CLIP_STATUSES:
        return None
    if new:
        if video is None:
            return None
        # The clip's own task, as a late attempt of its own: it holds the clip's charge.
        attempt = Attempt(
            status=clip.status,
            queued_at=clip.queued_at,
            submitted_at=clip.submitted_at,
            charge=clip.charge,
        )
    elif attempt is None:
        return None
    elif (
        video is not None
        and clip.status in (ClipStatus.QUEUED, ClipStatus.PROCESSING)
        and attempt.status is not ClipStatus.SUCCESS  # recorded and billed already
    ):
        return _earlier_task_succeeded(
            project_id,
            clip,
            task_uuid,
            attempt,
            video,
            now=now,
            correlation_id=correlation_id,
            log_size=log_size,
        )
    elif attempt.status is ClipStatus.SUCCESS or (
        # Ended: only a video that came after all is new. Unless a chain still follows the
        # task (given up on, then found at Runware): whatever end it brings is.
        attempt.status.is_terminal and attempt.lease is None and video is None
    ):
        return None
    return _attempt_ended(
        project_id,
        clip,
        task_uuid,
        attempt,
        result,
        now=now,
        correlation_id=correlation_id,
        log_size=log_size,
        new=new,
    )


def _attempt_ended(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    attempt: Attempt,
    result: TaskResult,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
    new: bool = False,
) -> Write:
    """The end of a task in the clip's ``attempts`` (``new``: an entry of its own task).

    No clip changes status and no count moves. A video is billed, added to the
    project's ``cost`` and told in one ``clip.attempt_succeeded``; a failure is history
    only (no event, no ``seq``).
    """
    update = _Update()
    prefix = f"{clip_path(clip.scene_index)}.attempts.{task_uuid}"
    # Given up on before (failed, cancelled): only the end of such a follow is the task's last
    # word (``end_recorded``): any other end (one we decided, ``taskReplaced``, not found after
    # the grace, our ceiling; or Runware's own) lets the task be followed should a chain find
    # it at Runware after all.
    given_up = attempt.status.is_terminal
    # Its reservation was freed when it was given up on, so a video is billed late; unless a
    # cancel moved the clip's charge here with the task, still in flight: this end settles it.
    late = given_up and not clip.charge_in_flight(task_uuid)
    if isinstance(result, TaskSucceeded):
        ended = attempt.model_copy(
            update={
                "status": ClipStatus.SUCCESS,
                "video_url": result.video_url,
                "video_uuid": result.video_uuid,
                "cost": result.cost,
                "error": None,
                "completed_at": now,
                "late": late,
                "end_recorded": given_up,
            }
        )
        update.cost(result.cost)
        # Billed, so kept: the copy sweep looks for this video too (``copy_due_at``).
        update.min[COPY_DUE] = now
        view = ended.view(task_uuid)
        update.events.append(
            attempt_event(clip.scene_index, view, occurred_at=now, correlation_id=correlation_id)
        )
    else:
        error = {"code": result.code, "message": result.message}
        ended = attempt.model_copy(
            update={
                "status": ClipStatus.FAILED,
                "error": error,
                "completed_at": now,
                "end_recorded": given_up,
            }
        )
    if new:
        update.set[prefix] = attempt_document(ended)
        guard = _guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid)
        guard[prefix] = {"$exists": False}
    else:
        fields = (
            "status",
            "video_url",
            "video_uuid",
            "cost",
            "error",
            "completed_at",
            "late",
            "end_recorded",
        )
        document = attempt_document(ended)
        # ``end_recorded`` only where set (the end of a follow): an entry without it reads the
        # same, in the release before too.
        update.set |= {f"{prefix}.{name}": document[name] for name in fields if name in document}
        update.unset.append(f"{prefix}.lease")  # its chain is done
        # The clip as read: what became of the result (recorded here, not taken by the
        # clip) was decided by the clip's status, so a retry meanwhile makes this stale.
        guard = _guard(
            project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid
        )
        guard[f"{prefix}.status"] = attempt.status.value
    # A failure of a task given up on before settles nothing, its reservation freed then;
    # unless the cancel moved it here (not late): then it is freed now.
    found = (
        None
        if late and ended.status is not ClipStatus.SUCCESS
        else _attempt_end(clip, task_uuid, ended)
    )
    settle = None
    if found is not None:
        on_clip, settlement = found
        path = _charge_of(clip.scene_index, None if on_clip else task_uuid)
        settle = (path, settlement)
    # A new entry of the clip's own task holds the clip's charge (``late_result``).
    settle_from = _charge_of(clip.scene_index) if new else None
    return update.build(guard, now=now, log_size=log_size, settle=settle, settle_from=settle_from)


def _attempt_end(clip: ClipState, task_uuid: str, ended: Attempt) -> tuple[bool, Settlement] | None:
    """What the recorded end of the attempt ``task_uuid`` settles, and whether on the clip's
    current charge (True) rather than the attempt's own.

    An attempt written before attempts held their charge (no ``charge``) settles as that
    code did: a video on the clip's current charge under ``<task>:late``, freeing nothing;
    a failure not at all (ARCHITECTURE.md, "Upgrades").
    """
    if ended.charge is None and task_uuid != clip.task_uuid:
        if ended.status is not ClipStatus.SUCCESS:
            return None
        return True, task_end(task_uuid, ended.status, ended.cost, late=True)
    return False, task_end(task_uuid, ended.status, ended.cost, late=ended.late)


def earlier_task_submitted(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    *,
    token: str | None,
    now: datetime,
    lease_until: datetime,
    new_token: str | None = None,
) -> Write | None:
    """Runware took an earlier task that was still queued: its attempt is processing now.

    What happens when an earlier task delivered the clip's video while the task that
    replaced it was still on its way to Runware, and an earlier submit had got it there
    (the submitter never submits a task the clip no longer wants): Runware bills it,
    so its chain follows it and its end is recorded in ``attempts`` (history: no seq).
    Only the chain of ``token`` (the submitting one) when the attempt keeps a lease: a
    stale chain neither marks it nor renews the lease of the chain that holds it.
    ``new_token``: the reconciler takes the chain over; the attempt's lease is now its.
    """
    attempt = clip.attempts.get(task_uuid)
    if attempt is None or attempt.status is not ClipStatus.QUEUED:
        return None
    prefix = f"{clip_path(clip.scene_index)}.attempts.{task_uuid}"
    guard: Document = {"_id": project_id, f"{prefix}.status": ClipStatus.QUEUED.value}
    to_set: Document = {
        f"{prefix}.status": ClipStatus.PROCESSING.value,
        f"{prefix}.submitted_at": now,
    }
    # Its watch starts at this submit, as a clip's does (``mark_processing``): a watch the
    # attempt carried from its queueing would time a re-armed chain out from there.
    update: Document = {"$set": to_set, "$unset": {f"{prefix}.watched_since": ""}}
    if attempt.lease is not None:
        # The submit chain goes on as the task's poll chain: its lease runs on.
        guard[f"{prefix}.lease.token"] = token
        to_set[f"{prefix}.lease.until"] = lease_until
        if new_token is not None:
            to_set[f"{prefix}.lease.token"] = new_token
    return Write(guard, update)


def _earlier_task_succeeded(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    attempt: Attempt,
    result: TaskSucceeded,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write:
    """An open clip takes an earlier task's video, which Runware billed late."""
    video = attempt.model_copy(
        update={
            "video_url": result.video_url,
            "video_uuid": result.video_uuid,
            "cost": result.cost,
            "completed_at": now,
        }
    )
    guard = _guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid)
    guard[f"{clip_path(clip.scene_index)}.attempts.{task_uuid}.status"] = attempt.status.value
    update = _take_video(clip, task_uuid, video, guard)
    update.cost(result.cost)
    if clip.lease is not None:
        # The replaced task's chain goes on under its attempt: the reconciler looks at the
        # project's attempts from now on (``now`` or the lease's end if it ran out already:
        # below the claim of a pass under way, whose release then matches nothing).
        update.min[ATTEMPTS_DUE] = min(now, clip.lease.until)
    # Its own reservation was freed when it was given up on; the replaced task keeps its own
    # (in ``attempts``) until it ends: Runware may hold it (followed and billed), or its
    # chain ends it failed (``taskReplaced``) and frees it.
    settle = task_end(task_uuid, ClipStatus.SUCCESS, result.cost, late=True)
    taken = _took_video(update, clip, task_uuid, video, now=now, correlation_id=correlation_id)
    # The clip takes the attempt's charge with its video (``_take_video``), if it has one.
    moved_from = None if attempt.charge is None else _charge_of(clip.scene_index, task_uuid)
    return taken.build(
        guard,
        now=now,
        log_size=log_size,
        settle=(_charge_of(clip.scene_index), settle),
        settle_from=moved_from,
    )


def take_late_video(
    project_id: str,
    tenant_id: str,
    clip: ClipState,
    *,
    now: datetime,
    lease_until: datetime,
    correlation_id: str | None,
    log_size: int,
) -> Write | None:
    """A retry of a failed clip that has a late video: the clip takes it, nothing is bought.

    The video was billed and counted in the project's ``cost`` when it came; this
    moves the clip to ``completed`` and reopens the project like any retry, so the
    retry's finish comes after all its clips, and if it never comes (a crash), the
    reconciler finishes the project once ``due_at`` (``lease_until``) passes.
    None when the clip has no such video.
    """
    found = clip.late_video()
    if found is None:
        return None
    task_uuid, video = found
    guard = _guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    guard[f"{clip_path(clip.scene_index)}.attempts.{task_uuid}.status"] = video.status.value
    update = _take_video(clip, task_uuid, video, guard)
    # Counted in the project's ``cost`` when it came (``clip.attempt_succeeded``).
    taken = _took_video(
        update, clip, task_uuid, video, now=now, correlation_id=correlation_id, cost_counted=True
    )
    _reopen(taken, lease_until=lease_until)
    return taken.build(guard, now=now, log_size=log_size)


def _take_video(clip: ClipState, task_uuid: str, video: Attempt, guard: Document) -> _Update:
    """The clip becomes a success with the video of ``task_uuid``, which leaves ``attempts``.

    The task it stood for moves to ``attempts`` with its reservation (unless it is the
    same task; ``guard`` then says where none is yet), and nothing else of it stays on
    the clip.
    """
    path = clip_path(clip.scene_index)
    update = _Update()
    if task_uuid != clip.task_uuid:
        _keep_as_attempt(update, guard, clip)
    assert video.completed_at is not None  # a video's end is recorded with it
    ended = pack_result(
        completed_at=video.completed_at,
        video_url=video.video_url,
        video_uuid=video.video_uuid,
        cost=video.cost,
        late=True,
    )
    times = {"queued_at": video.queued_at, "submitted_at": video.submitted_at}
    fields: dict[str, Any] = {name: value for name, value in times.items() if value is not None}
    # A video of an attempt without a charge (written by the code before attempts held
    # one) is billed late on the clip's current charge, as that code did.
    charge = video.charge if video.charge is not None else clip.charge
    if charge is not None:
        fields["charge"] = charge.model_dump()
    if video.stored_key is not None and video.asset is not None:
        # reelflow holds this video already (the attempt's copy): the clip keeps that copy.
        fields["asset"] = video.asset.model_dump()
    if video.asset is not None:
        update.pull[ASSET_FAILURES] = task_uuid  # the attempt, and its mark, are gone
    _set_clip(
        update,
        clip.scene_index,
        task_uuid=task_uuid,
        status=ClipStatus.SUCCESS,
        result=ended,
        **fields,
    )
    kept = {"status", "result", *fields}
    update.unset += [f"{path}.attempts.{task_uuid}"]
    update.unset += [f"{path}.{name}" for name in TASK_FIELDS if name not in kept]
    return update


def _took_video(
    update: _Update,
    clip: ClipState,
    task_uuid: str,
    video: Attempt,
    *,
    now: datetime,
    correlation_id: str | None,
    cost_counted: bool = False,
) -> _Update:
    """The count move, the copy and the ``clip.updated`` of a clip that took ``video``.

    ``cost_counted``: the video's cost is in the project's ``cost`` already (the event says so).
    """
    update.min[COPY_DUE] = now
    update.move(clip.status.bucket, "completed")
    view = ClipView(
        task_uuid=task_uuid,
        scene_index=clip.scene_index,
        status=ClipStatus.SUCCESS,
        video_url=video.video_url,
        cost=video.cost,
        submitted_at=video.submitted_at,
        completed_at=video.completed_at,
    )
    replaced = clip.task_uuid if task_uuid != clip.task_uuid else None
    update.events.append(
        clip_event(
            view,
            from_bucket=clip.status.bucket,
            to_bucket="completed",
            occurred_at=now,
            correlation_id=correlation_id,
            replaces_task_uuid=replaced,
            cost_counted=cost_counted,
        )
    )
    return update


# --- reelflow's copy of a video: never a change of the clip's status --------------

#: what of the project has a copy given up on (``reelflow-admin assets list --failed``): the
#: scene index of a clip's video, the task UUID of an attempt's
ASSET_FAILURES = "asset_failures"


@dataclass(frozen=True)
class _CopyOf:
    """Where a copy of a task's video is recorded: on the clip (its own task's video) or on
    its attempt (an earlier task's, billed all the same), how the project marks a failed one,
    and what the write is guarded on."""

    asset_path: str
    #: in ``asset_failures``: the scene index of a clip's video, the task UUID of an attempt's
    failure_mark: int | str
    guard: Document

    @classmethod
    def of(cls, project_id: str, scene_index: int, task_uuid: str, *, of_attempt: bool) -> _CopyOf:
        if of_attempt:
            # The attempt has a video, and it is not stored yet.
            prefix = f"{clip_path(scene_index)}.attempts.{task_uuid}"
            guard = {
                "_id": project_id,
                f"{prefix}.status": ClipStatus.SUCCESS.value,
                f"{prefix}.asset.status": {"$ne": "stored"},
            }
            return cls(f"{prefix}.asset", task_uuid, guard)
        # The clip is a success with this task, and its video is not stored yet.
        guard = _guard(
            project_id,
            scene_index,
            status=ClipStatus.SUCCESS.value,
            task_uuid=task_uuid,
            asset__status={"$ne": "stored"},
        )
        return cls(f"{clip_path(scene_index)}.asset", scene_index, guard)


def video_stored(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    *,
    key: str,
    size_bytes: int,
    sha256: str | None,
    content_type: str,
    stored_url: str,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
    of_attempt: bool = False,
) -> Write:
    """The task's video landed in reelflow's storage: the clip's ``asset`` and one
    ``clip.stored``, or (``of_attempt``: an earlier task's video, in ``attempts``) that
    attempt's ``asset`` and one ``clip.attempt_stored``.

    Guarded on the clip (or the attempt) being a success with this task and not stored yet,
    and it sets nothing but the asset: a terminal status never changes (the clip's own
    fields and the counts, for an attempt's), and a duplicate copy writes nothing. No count
    moves; ``seq`` does (the event). A video whose copy was marked failed earlier (and
    retried by an operator) leaves the failures.
    """
    target = _CopyOf.of(project_id, scene_index, task_uuid, of_attempt=of_attempt)
    update = _Update()
    update.set[target.asset_path] = {
        "status": "stored",
        "key": key,
        "size_bytes": size_bytes,
        "sha256": sha256,
        "content_type": content_type,
        "stored_at": now,
    }
    update.pull[ASSET_FAILURES] = target.failure_mark
    update.events.append(
        stored_event(
            scene_index,
            task_uuid,
            stored_url=stored_url,
            size_bytes=size_bytes,
            occurred_at=now,
            correlation_id=correlation_id,
            of_attempt=of_attempt,
        )
    )
    return update.build(target.guard, now=now, log_size=log_size)


def copy_failed(
    project_id: str,
    scene_index: int,
    task_uuid: str,
    *,
    key: str,
    code: str,
    message: str,
    attempts: int,
    now: datetime,
    of_attempt: bool = False,
) -> Write:
    """Every copy of the task's video failed: say so on the clip (or, ``of_attempt``, on the
    attempt) and mark the project (``asset_failures``).

    History, not a public change (no event, no ``seq``): the clip stays a success with
    Runware's URL. Guarded like :func:`video_stored`, so it never overwrites a copy that
    landed.
    """
    target = _CopyOf.of(project_id, scene_index, task_uuid, of_attempt=of_attempt)
    asset = {
        "status": "failed",
        "key": key,
        "error": {"code": code, "message": message},
        "attempts": attempts,
        "failed_at": now,
    }
    return Write(
        target.guard,
        {"$set": {target.asset_path: asset}, "$addToSet": {ASSET_FAILURES: target.failure_mark}},
    )


def claim_copies(project_id: str, *, due_at: datetime, now: datetime) -> Write:
    """One copy sweep takes the project: it moves ``copy_due_at`` on from what it read."""
    return Write({"_id": project_id, COPY_DUE: due_at}, {"$set": {COPY_DUE: now}})


def copies_swept(project_id: str, *, claimed: datetime, updated_at: datetime) -> Write:
    """Nothing left to copy: the marker goes, unless a write (a new success) came since."""
    return Write(
        {"_id": project_id, COPY_DUE: claimed, "updated_at": updated_at},
        {"$unset": {COPY_DUE: ""}},
    )


# --- the ledger's settlements, as the project records them ------------------------

#: the keys (``<charge id>:<task>``, ``…:late``) of the settlements the tenant's ledger applied
#: for the project's clips, each added once the ledger's ``$inc`` did (or had) applied: a
#: duplicate of a clip's end settles none of them again, however late it comes
SETTLED = "settled"


def settled(project_id: str, keys: Sequence[str]) -> Write:
    """The ledger applied the settlements ``keys`` (or had already): the project records them."""
    return Write({"_id": project_id}, {"$addToSet": {SETTLED: {"$each": list(keys)}}})


# --- settlements no message stands behind: owed until the settle sweep sees them made ----

#: the earliest end, written by a writer no message stands behind (a reconciler's pass, the
#: api's cancel), whose settlement the settle sweep has not seen made (``$min``; moved on by
#: each sweep's claim, unset with :data:`SETTLE_OWED` once the sweep made them all)
SETTLE_DUE = "settle_due_at"
#: those ends' settlements, ``<scene index>:<key on the ledger>`` each (``<charge id>:<task>``
#: or ``…:<task>:late``: the charge named, so an end of the same task under another charge
#: is never taken for it): what the sweep settles if the ledger's ``$inc`` never came
SETTLE_OWED = "settle_owed"


def owed(write: Write, clip: ClipState, *, now: datetime) -> Write:
    """``write``, built by a writer no message stands behind from ``clip`` as it read it,
    marking in the same update the settlement it carries as owed: should its writer stop
    between this write and the ledger's ``$inc`` (a crash, an outage past its retries), no
    message would repeat it, and the settle sweep makes it from this mark.

    Only where the task holds a charge as read (the charge the write settles, read where it
    is before the write, :attr:`Write.settle_from`): a tenant without a ledger pays nothing
    for a mark. The write is guarded on that charge as read, present or absent, so it never
    settles another (a retry under a new charge between the read and the write makes it
    match nothing: its writer reads again). ``write`` as it is when it settles nothing.

    Its ``$push`` is no longer events alone, so it is never written together with other
    clips' changes (:mod:`together`): it goes alone, as those writers' rare writes do.
    """
    if write.settle is None:
        return write
    where = write.settle_from or write.settle[0]
    charge = _charge_at(clip, where)
    filter_ = dict(write.filter)
    if charge is None:
        filter_[where] = None  # null or absent, as read
        return replace(write, filter=filter_)
    filter_[f"{where}.id"] = charge.id
    update = dict(write.update)
    update["$min"] = {**update.get("$min", {}), SETTLE_DUE: now}
    entry = owed_entry(clip.scene_index, write.settle[1].key_on(charge))
    update["$push"] = {**update.get("$push", {}), SETTLE_OWED: {"$each": [entry]}}
    return replace(write, filter=filter_, update=update)


def _charge_at(clip: ClipState, path: str) -> Charge | None:
    """The charge at ``path`` (:func:`_charge_of`'s) of the clip as read."""
    if path == _charge_of(clip.scene_index):
        return clip.charge
    for task_uuid, attempt in clip.attempts.items():
        if path == _charge_of(clip.scene_index, task_uuid):
            return attempt.charge
    return None  # an attempt not there yet


def owed_entry(scene_index: int, key: str) -> str:
    """What :data:`SETTLE_OWED` holds for the settlement of the scene's clip whose key on the
    ledger is ``key`` (:meth:`Settlement.key_on`)."""
    return f"{scene_index}:{key}"


def owed_of(entry: str) -> tuple[int, str, str]:
    """An :func:`owed_entry` read back: (scene index, key on the ledger, the key's task)."""
    scene, key = entry.split(":", 1)
    return int(scene), key, key.split(":")[1]


def claim_owed(project_id: str, *, due_at: datetime, now: datetime) -> Write:
    """One settle sweep takes the project: it moves ``settle_due_at`` on from what it read (the
    project is due again a grace after ``now``, should this sweep stop half-way)."""
    return Write({"_id": project_id, SETTLE_DUE: due_at}, {"$set": {SETTLE_DUE: now}})


def owed_swept(project_id: str, *, owed_as_read: Sequence[str], claimed: datetime) -> Write:
    """Every settlement owed as the sweep read them is made: the marks go, unless a writer
    owed another since (its entry makes the list differ: the project stays due), or another
    sweep took the project since (``claimed``: this sweep's claim, :func:`claim_owed`'s
    ``now``). A sweep that stalled past the grace and whose project another sweep unmarked
    and a writer marked again, with an entry equal to one it read, would otherwise drop that
    entry unsettled."""
    # A mark without entries (none is written so; a hand's edit) goes too, unless one came.
    return Write(
        {"_id": project_id, SETTLE_OWED: _as_read(owed_as_read), SETTLE_DUE: claimed},
        {"$unset": {SETTLE_OWED: "", SETTLE_DUE: ""}},
    )


def owing_as_read(write: Write, owed_as_read: Sequence[str]) -> Write:
    """``write`` (a retry of a clip), guarded on the project's owed list as read: a settlement
    owed since (on this clip, maybe) makes it match nothing, and its writer reads again and
    makes it before the retry moves the clip on."""
    return replace(write, filter={**write.filter, SETTLE_OWED: _as_read(owed_as_read)})


def _as_read(owed: Sequence[str]) -> Any:
    """A guard on the owed list being ``owed``: none there for none."""
    return list(owed) if owed else {"$exists": False}
