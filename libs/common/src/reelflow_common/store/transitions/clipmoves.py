"""The hot path: a chain moves its clip (Runware took its task, the task ended, its
progress, why it waits), and the project ends once its last open clip has."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reelflow_common.domain import (
    OPEN_CLIP_STATUSES,
    ClipStatus,
    Counts,
    ProjectStatus,
    final_project_status,
)
from reelflow_common.messages import ClipView
from reelflow_common.store.documents import clip_path, pack_result
from reelflow_common.store.eventlog import clip_event, finish_event
from reelflow_common.store.models import Attempt, TaskResult, TaskSucceeded
from reelflow_common.store.transitions import follows
from reelflow_common.store.transitions.charges import charge_of, task_end
from reelflow_common.store.transitions.markers import COPY_DUE
from reelflow_common.store.transitions.write import Update, Write, clip_guard, set_clip


def _still_pending(
    update: Update, view: ClipView, *, now: datetime, correlation_id: str | None
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
    update = Update()
    lease = {"token": new_token or token, "until": lease_until}
    # The watch starts now: a clip without ``watched_since`` is watched since its submit.
    set_clip(update, scene_index, status=ClipStatus.PROCESSING, submitted_at=now, lease=lease)
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
    guard = clip_guard(
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
    follow: Attempt | None = None,
) -> Write:
    """The clip's current task is over: success with its video, or failed with a reason.

    Recorded whatever chain learnt it (Runware's answer is the truth) unless
    ``token`` is given: a submit chain fails a clip only while it still holds it.
    ``only_clip``: the project has this one clip, so its end is the project's: the same
    update finishes it (as :func:`finish` would after it), guarded on the project having
    one clip, pending, and still generating; a project of more clips leaves it unapplied.
    ``follow``: our ceiling's end, whose task stays followed late in ``attempts`` with the
    clip's charge (:func:`follows.late_follow`): then the end settles nothing.
    """
    update = Update()
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
    set_clip(update, scene_index, status=status, result=pack_result(completed_at=now, **fields))
    if error is not None:
        set_clip(update, scene_index, error=error)
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
    guard = clip_guard(project_id, scene_index, status={"$in": allowed}, task_uuid=task_uuid)
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
    if follow is not None and follows.late_follow(
        update, guard, scene_index, task_uuid, follow, now=now
    ):
        return update.build(guard, now=now, log_size=log_size)  # the follow's end settles it
    settle = task_end(task_uuid, status, fields.get("cost"))
    return update.build(guard, now=now, log_size=log_size, settle=(charge_of(scene_index), settle))


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
    update = Update()
    set_clip(update, scene_index, progress=value)
    view = ClipView(
        task_uuid=task_uuid,
        scene_index=scene_index,
        status=ClipStatus.PROCESSING,
        submitted_at=submitted_at,
        progress=value,
    )
    _still_pending(update, view, now=now, correlation_id=correlation_id)
    guard = clip_guard(
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
    update = Update()
    set_clip(update, scene_index, waiting=reason)
    view = ClipView(
        task_uuid=task_uuid, scene_index=scene_index, status=ClipStatus.QUEUED, waiting=reason
    )
    _still_pending(update, view, now=now, correlation_id=correlation_id)
    guard = clip_guard(
        project_id,
        scene_index,
        status=ClipStatus.QUEUED.value,
        task_uuid=task_uuid,
        lease__token=token,
    )
    return update.build(guard, now=now, log_size=log_size)


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
    update = Update()
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
