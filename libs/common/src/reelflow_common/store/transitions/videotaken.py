"""A clip takes the video of another of its tasks (an earlier one, or its own given up on),
and the task it leaves moves to ``attempts``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from reelflow_common.domain import ClipStatus
from reelflow_common.messages import ClipView
from reelflow_common.mongo import Document
from reelflow_common.store.documents import TASK_FIELDS, attempt_document, clip_path, pack_result
from reelflow_common.store.eventlog import clip_event
from reelflow_common.store.models import Attempt, ClipState
from reelflow_common.store.transitions.markers import ASSET_FAILURES, COPY_DUE
from reelflow_common.store.transitions.write import Update, set_clip

if TYPE_CHECKING:
    from reelflow_common.storage.links import VideoLinks


def with_attempts(after: ClipState, links: VideoLinks | None) -> ClipView:
    """The clip as a read shows it after a change that moved a task into or out of its
    ``attempts``, attempts and all (``[]``: none left): a ``clip.updated`` then carries them,
    so that a client replaces the ones it holds. ``links`` signs the copies reelflow holds
    (the clip's, its attempts'), as a read does."""
    view = after.view(links=links)
    return view if view.attempts is not None else view.model_copy(update={"attempts": []})


def attempts_after(clip: ClipState, task_uuid: str) -> dict[str, Attempt]:
    """The clip's ``attempts`` once it stands for ``task_uuid``: that task leaves them, and the
    task it stood for joins them unless it is there already (:func:`keep_as_attempt`)."""
    attempts = {uuid: attempt for uuid, attempt in clip.attempts.items() if uuid != task_uuid}
    if task_uuid != clip.task_uuid and clip.task_uuid not in clip.attempts:
        attempts[clip.task_uuid] = clip.as_attempt()
    return attempts


def keep_as_attempt(update: Update, guard: Document, clip: ClipState) -> None:
    """The clip's current task moves to ``attempts`` as the clip leaves it, unless it is there
    already: followed after it was given up on (its chain's lease) or ended so; that entry
    is kept as it is, never overwritten whole. The whole entry is written only where none
    is (``guard``): one a concurrent writer added since the read (a given-up task found at
    Runware) makes the write match nothing, and the caller reads again."""
    if clip.task_uuid not in clip.attempts:
        path = f"{clip_path(clip.scene_index)}.attempts.{clip.task_uuid}"
        update.set[path] = attempt_document(clip.as_attempt())
        guard[path] = {"$exists": False}


def take_video(
    clip: ClipState, task_uuid: str, video: Attempt, guard: Document, *, late: bool = True
) -> Update:
    """The clip becomes a success with the video of ``task_uuid``, which leaves ``attempts``.

    The task it stood for moves to ``attempts`` with its reservation (unless it is the
    same task; ``guard`` then says where none is yet), and nothing else of it stays on
    the clip. ``late``: the video was billed as a late video (``<charge>:<task>:late``), as
    the clip's end then says; False for one billed as its task's end (``<charge>:<task>``:
    a task followed late with its reservation held), so the clip's end names that same key.
    """
    path = clip_path(clip.scene_index)
    update = Update()
    if task_uuid != clip.task_uuid:
        keep_as_attempt(update, guard, clip)
    assert video.completed_at is not None  # a video's end is recorded with it
    ended = pack_result(
        completed_at=video.completed_at,
        video_url=video.video_url,
        video_uuid=video.video_uuid,
        cost=video.cost,
        late=late,
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
    set_clip(
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


def took_video(
    update: Update,
    clip: ClipState,
    task_uuid: str,
    video: Attempt,
    *,
    now: datetime,
    correlation_id: str | None,
    links: VideoLinks | None,
    cost_counted: bool = False,
    late: bool = True,
) -> Update:
    """The count move, the copy and the ``clip.updated`` of a clip that took ``video``: the
    clip as :func:`take_video` leaves it, with its ``attempts`` and reelflow's copy of the
    video, if it holds one (signed with ``links``).

    ``cost_counted``: the video's cost is in the project's ``cost`` already (the event says so).
    ``late``: as given to :func:`take_video`.
    """
    update.min[COPY_DUE] = now
    update.move(clip.status.bucket, "completed")
    after = ClipState(
        scene_index=clip.scene_index,
        task_uuid=task_uuid,
        status=ClipStatus.SUCCESS,
        video_url=video.video_url,
        video_uuid=video.video_uuid,
        cost=video.cost,
        queued_at=video.queued_at,
        submitted_at=video.submitted_at,
        completed_at=video.completed_at,
        late=late,
        attempts=attempts_after(clip, task_uuid),
        asset=video.asset if video.stored_key is not None else None,
    )
    view = with_attempts(after, links)
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
