"""A terminal result of a task the clip does not stand for (any more): recorded where it
belongs (its ``attempts`` entry, or the open clip takes its video); a terminal clip never
changes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from reelflow_common.domain import GIVEN_UP_CLIP_STATUSES, ClipStatus
from reelflow_common.store.documents import attempt_document, clip_path
from reelflow_common.store.eventlog import attempt_event
from reelflow_common.store.models import (
    Attempt,
    ClipState,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
)
from reelflow_common.store.transitions.charges import attempt_end, charge_of, task_end
from reelflow_common.store.transitions.markers import ATTEMPTS_DUE, COPY_DUE
from reelflow_common.store.transitions.retries import TIMED_OUT
from reelflow_common.store.transitions.videotaken import take_video, took_video
from reelflow_common.store.transitions.write import Update, Write, clip_guard

if TYPE_CHECKING:
    from reelflow_common.storage.links import VideoLinks


def late_result(
    project_id: str,
    clip: ClipState,
    task_uuid: str,
    result: TaskResult,
    *,
    now: datetime,
    correlation_id: str | None,
    log_size: int,
    links: VideoLinks | None = None,
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
      processing clip's, one Runware took after the cancel, or one our ceiling failed its
      clip on, followed late) records either end there, and its chain is done; the clip's
      own ceiling again (a duplicate of the one that started a late follow) is not the late
      follow's end, which is its ``follow_until``.

    None when there is nothing to record. Guarded on the clip as read. ``links`` signs the
    copies a ``clip.updated`` shows (the clip's attempts').
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
            links=links,
        )
    elif attempt.status is ClipStatus.SUCCESS or (
        # Ended: only a video that came after all is new. Unless a chain still follows the
        # task (given up on, then found at Runware): whatever end it brings is.
        attempt.status.is_terminal and attempt.lease is None and video is None
    ):
        return None
    elif (
        attempt.followed_late
        and attempt.follow_until is not None
        and isinstance(result, TaskFailed)
        and result.code == TIMED_OUT
        and now < attempt.follow_until
    ):
        # The clip's own ceiling again (the check that decided it, redelivered; a fork of its
        # chain; the reconciler beside it), not the late follow's: that follow goes on.
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
    update = Update()
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
        guard = clip_guard(
            project_id, clip.scene_index, status=clip.status.value, task_uuid=task_uuid
        )
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
        guard = clip_guard(
            project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid
        )
        guard[f"{prefix}.status"] = attempt.status.value
    # A failure of a task given up on before settles nothing, its reservation freed then;
    # unless the cancel moved it here (not late): then it is freed now.
    found = (
        None
        if late and ended.status is not ClipStatus.SUCCESS
        else attempt_end(clip, task_uuid, ended)
    )
    settle = None
    if found is not None:
        on_clip, settlement = found
        path = charge_of(clip.scene_index, None if on_clip else task_uuid)
        settle = (path, settlement)
    # A new entry of the clip's own task holds the clip's charge (``late_result``).
    settle_from = charge_of(clip.scene_index) if new else None
    return update.build(guard, now=now, log_size=log_size, settle=settle, settle_from=settle_from)


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
    links: VideoLinks | None,
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
    guard = clip_guard(
        project_id, clip.scene_index, status=clip.status.value, task_uuid=clip.task_uuid
    )
    guard[f"{clip_path(clip.scene_index)}.attempts.{task_uuid}.status"] = attempt.status.value
    update = take_video(clip, task_uuid, video, guard)
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
    taken = took_video(
        update, clip, task_uuid, video, now=now, correlation_id=correlation_id, links=links
    )
    # The clip takes the attempt's charge with its video (``take_video``), if it has one.
    moved_from = None if attempt.charge is None else charge_of(clip.scene_index, task_uuid)
    return taken.build(
        guard,
        now=now,
        log_size=log_size,
        settle=(charge_of(clip.scene_index), settle),
        settle_from=moved_from,
    )
