"""The api's cancel of an open clip, built from the clip as read: a task Runware may still
run stays followed in ``attempts.T``, with its reservation."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.domain import ClipStatus
from reelflow_common.mongo import Document
from reelflow_common.store.documents import attempt_document, clip_path
from reelflow_common.store.eventlog import clip_event
from reelflow_common.store.models import ClipState, Lease
from reelflow_common.store.transitions.charges import charge_of, task_end
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE
from reelflow_common.store.transitions.write import Update, Write, clip_guard, set_clip


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
    update = Update()
    path = clip_path(clip.scene_index)
    set_clip(update, clip.scene_index, status=ClipStatus.CANCELLED)
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
    guard = clip_guard(
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
        guard, now=now, log_size=log_size, settle=(charge_of(clip.scene_index), settle)
    )


def _follow_cancelled(
    update: Update, guard: Document, clip: ClipState, lease: Lease, *, now: datetime
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
    update: Update, guard: Document, clip: ClipState, lease: Lease, *, now: datetime
) -> bool:
    """The cancelled queued clip's task waits in ``attempts.T`` for its submit chain's word,
    under that chain's ``lease``, with the clip's charge (a new entry: guarded on none)."""
    prefix = f"{clip_path(clip.scene_index)}.attempts.{clip.task_uuid}"
    update.set[prefix] = attempt_document(clip.model_copy(update={"lease": lease}).as_attempt())
    guard[prefix] = {"$exists": False}
    # Below the claim of an attempts pass under way, whose release then matches nothing.
    update.min[ATTEMPTS_DUE] = min(now, lease.until)
    return True
