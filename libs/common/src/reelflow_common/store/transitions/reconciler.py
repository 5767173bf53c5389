"""The reconcilers' writes: a due project claimed and released (for its clips' leases or its
attempts'), a lease that ran out re-armed, a stray attempt dropped."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.domain import ProjectStatus
from reelflow_common.store.documents import clip_path
from reelflow_common.store.models import ClipState, Lease
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE
from reelflow_common.store.transitions.write import Write, clip_guard


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
    guard = clip_guard(
        project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid
    )
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
    guard = clip_guard(project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid)
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
