"""A task the clip no longer stands for, in ``attempts.T``, and the chain that follows it:
Runware took it (an earlier task still queued, a cancelled clip's held task), never got it,
took it after it was given up on, or may still run it after our ceiling failed the clip (its
late follow). History: no event."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.domain import GIVEN_UP_CLIP_STATUSES, ClipStatus
from reelflow_common.mongo import Document
from reelflow_common.store.documents import attempt_document, clip_path
from reelflow_common.store.models import Attempt, ClipState, Lease
from reelflow_common.store.transitions.charges import charge_of, task_end
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE
from reelflow_common.store.transitions.write import Update, Write, clip_guard


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
    return Write(guard, update, settle=(charge_of(scene_index, task_uuid), settle))


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
        guard = clip_guard(
            project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid
        )
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


def late_follow(
    update: Update,
    guard: Document,
    scene_index: int,
    task_uuid: str,
    followed: Attempt,
    *,
    now: datetime,
) -> bool:
    """Our ceiling fails the open clip (``timedOut``: Runware never said its task failed), and
    the task stays followed, late, in a new ``attempts.T`` (``followed``: the clip's task as
    it leaves it, ``failed`` as the clip, its chain's lease and ``follow_until``), which the
    attempts reconciler re-arms should that chain be lost. Whether the clip's charge moved
    there with it (the clip has one: guarded on it as read, or on none): in flight until the
    follow's end settles it (``<charge>:T``), so the clip's end settles nothing. History (the
    clip's ``clip.updated`` says the end; the follow adds no event).
    """
    assert followed.lease is not None
    path = clip_path(scene_index)
    prefix = f"{path}.attempts.{task_uuid}"
    update.set[prefix] = attempt_document(followed)
    guard[prefix] = {"$exists": False}
    # Below the claim of an attempts pass under way, whose release then matches nothing.
    update.min[ATTEMPTS_DUE] = min(now, followed.lease.until)
    if followed.charge is None:
        guard[f"{path}.charge"] = None  # null or absent, as read
        return False
    guard[f"{path}.charge.id"] = followed.charge.id
    update.unset.append(f"{path}.charge")
    return True


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
