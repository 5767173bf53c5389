"""A chain's own lease (a clip's, or a replaced task's in its attempt): renewed while the
chain goes on, or run out at once for the reconciler."""

from __future__ import annotations

from datetime import datetime

from reelflow_common.store.documents import clip_path
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE
from reelflow_common.store.transitions.write import Write


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
