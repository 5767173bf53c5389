"""reelflow's copy of a task's video, on the clip or on its attempt: stored, or given up on
(never a change of the clip's status); and the copy sweep's claim of a project."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reelflow_common.domain import ClipStatus
from reelflow_common.mongo import Document
from reelflow_common.store.documents import clip_path
from reelflow_common.store.eventlog import stored_event
from reelflow_common.store.transitions.markers import ASSET_FAILURES, COPY_DUE
from reelflow_common.store.transitions.write import Update, Write, clip_guard


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
        guard = clip_guard(
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
    update = Update()
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
