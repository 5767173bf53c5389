"""The api's retry of a failed clip, built from the clip as read: a new task, the same task
watched again, or a late video taken instead (nothing bought); each reopens the project."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.mongo import Document
from reelflow_common.store.documents import TASK_FIELDS, clip_path, queued_clip_document
from reelflow_common.store.eventlog import clip_event
from reelflow_common.store.models import ClipState
from reelflow_common.store.transitions.videotaken import (
    attempts_after,
    keep_as_attempt,
    take_video,
    took_video,
    with_attempts,
)
from reelflow_common.store.transitions.write import Update, Write, clip_guard, set_clip

if TYPE_CHECKING:
    from reelflow_common.storage.links import VideoLinks

#: the error code of a clip that ran out of time on our side (Runware never said it failed)
TIMED_OUT = "timedOut"


def _reopen(update: Update, *, lease_until: datetime) -> None:
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
    links: VideoLinks | None = None,
) -> Write:
    """A clip whose task Runware failed gets a new task; the failed one moves to ``attempts``.

    ``charge``: the new task's reservation on the tenant's ledger, if it has one. Its
    ``clip.updated`` carries the clip's ``attempts`` (``links`` signs their copies).
    """
    path = clip_path(clip.scene_index)
    update = Update()
    fresh = queued_clip_document(
        new_task_uuid, token=token, lease_until=lease_until, queued_at=now, charge=charge
    )
    for name, value in fresh.items():
        update.set[f"{path}.{name}"] = value
    guard = clip_guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    keep_as_attempt(update, guard, clip)
    # Nothing of the failed task stays on the clip: its end, its progress, and a reservation
    # the new task does not have (its tenant's limits went away) that would be settled twice.
    update.unset += [f"{path}.{name}" for name in TASK_FIELDS if name not in fresh]
    update.move("failed", "pending")
    _reopen(update, lease_until=lease_until)
    after = ClipState(
        scene_index=clip.scene_index,
        task_uuid=new_task_uuid,
        status=ClipStatus.QUEUED,
        queued_at=now,
        attempts=attempts_after(clip, new_task_uuid),
    )
    view = with_attempts(after, links)
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
    task would pay twice. A task followed late after it timed out holds the clip's
    reservation in ``attempts`` (:meth:`ClipState.charge_in_flight`): the clip takes it back
    with the task (``charge`` None: the retry reserved nothing for it).
    """
    update = Update()
    followed = clip.runs_at_runware()
    # Followed late after it timed out, with the clip's reservation: that comes back to it.
    held = clip.attempts[clip.task_uuid] if clip.charge_in_flight(clip.task_uuid) else None
    if charge is not None and held is not None:
        raise ValueError("a clip whose late follow holds its reservation reserves no other")
    submitted_at = clip.submitted_at or (followed.submitted_at if followed else None)
    set_clip(
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
    elif held is not None and held.charge is not None:
        # Still in flight (its end not recorded: guarded below), so the clip's end settles it.
        update.set[f"{path}.charge"] = held.charge.model_dump()
    elif clip.charge is not None:
        # The timed-out end freed it; a retry that reserved nothing (the tenant's limits went
        # away) must not leave it there for a later end or cancel to settle a second time.
        update.unset.append(f"{path}.charge")
    update.move("failed", "pending")
    _reopen(update, lease_until=lease_until)
    # As a read shows it: the end cleared, the progress stored before it kept.
    view = clip.model_copy(
        update={
            "status": ClipStatus.PROCESSING,
            "submitted_at": submitted_at,
            "error": None,
            "video_url": None,
            "cost": None,
            "completed_at": None,
        }
    ).view(with_attempts=False)
    update.events.append(
        clip_event(
            view,
            from_bucket="failed",
            to_bucket="pending",
            occurred_at=now,
            correlation_id=correlation_id,
        )
    )
    guard = clip_guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    if followed is not None or held is not None:
        # Still followed as read: an end of the task recorded since makes this match nothing.
        guard[f"{path}.attempts.{clip.task_uuid}.lease"] = {"$exists": True}
        guard[f"{path}.attempts.{clip.task_uuid}.end_recorded"] = {"$ne": True}
    if followed is None:
        guard[f"{path}.error.code"] = TIMED_OUT
    return update.build(_no_late_video_since(guard, clip), now=now, log_size=log_size)


def take_late_video(
    project_id: str,
    tenant_id: str,
    clip: ClipState,
    *,
    now: datetime,
    lease_until: datetime,
    correlation_id: str | None,
    log_size: int,
    links: VideoLinks | None = None,
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
    guard = clip_guard(
        project_id,
        clip.scene_index,
        tenant_id=tenant_id,
        status=ClipStatus.FAILED.value,
        task_uuid=clip.task_uuid,
    )
    guard[f"{clip_path(clip.scene_index)}.attempts.{task_uuid}.status"] = video.status.value
    # The clip's end names the key the video was billed under when it came: late, but for its
    # own task followed late with the clip's charge held (billed as that task's end).
    late = video.late or task_uuid != clip.task_uuid
    update = take_video(clip, task_uuid, video, guard, late=late)
    # Counted in the project's ``cost`` when it came (``clip.attempt_succeeded``).
    taken = took_video(
        update,
        clip,
        task_uuid,
        video,
        now=now,
        correlation_id=correlation_id,
        links=links,
        cost_counted=True,
        late=late,
    )
    _reopen(taken, lease_until=lease_until)
    return taken.build(guard, now=now, log_size=log_size)
