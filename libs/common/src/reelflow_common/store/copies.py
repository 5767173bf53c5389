"""reelflow's copies of the videos: a copy stored or given up on (the clip's, else its
attempt's), and the copy sweep's due projects, claim and release."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from reelflow_common.store.documents import (
    LOG_HEAD,
    WITHOUT_REQUESTS_AND_EVENTS,
    clip_path,
    log_head,
    project_from_document,
)
from reelflow_common.store.eventlog import about_scene, materialize
from reelflow_common.store.models import Project
from reelflow_common.store.results import Change
from reelflow_common.store.transitions import markers, videocopies
from reelflow_common.store.writes import ProjectWrites


class VideoCopies(ProjectWrites):
    """The copies of the tasks' videos in reelflow's storage, as the projects record them."""

    async def record_stored(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        key: str,
        size_bytes: int,
        sha256: str | None,
        content_type: str,
        stored_url: str,
        correlation_id: str | None = None,
    ) -> Change:
        """The video of the task is stored: one guarded update with its ``clip.stored``, or, for
        a task in the clip's ``attempts``, its ``clip.attempt_stored``.

        The clip's write first (a clip's copy, the common case, costs that one update); only
        when it matches nothing, the attempt's (a second update). Not applied either way (a
        duplicate copy, or the task moved on): the stored events about the scene, to
        re-publish, as any repair does.
        """
        fields: dict[str, Any] = {
            "key": key,
            "size_bytes": size_bytes,
            "sha256": sha256,
            "content_type": content_type,
            "stored_url": stored_url,
            "now": self._now(),
            "correlation_id": correlation_id,
            "log_size": self._log_size,
        }
        for of_attempt in (False, True):
            write = videocopies.video_stored(
                project_id, scene_index, task_uuid, of_attempt=of_attempt, **fields
            )
            applied = await self._apply(write, project_id)
            if applied is not None:
                return Change(True, applied)
        doc = await self._majority_reads.find_one(
            {"_id": project_id}, LOG_HEAD | {"events": 1, clip_path(scene_index): 1}
        )
        if doc is None:
            return Change(False)
        return Change(
            False, about_scene(materialize(log_head(project_id, doc), doc["events"]), scene_index)
        )

    async def record_copy_failed(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        *,
        key: str,
        code: str,
        message: str,
        attempts: int,
    ) -> bool:
        """No copy of the task's video (the clip's, else its attempt's) will land; False if it is
        stored (or no video of that task is recorded) now."""
        for of_attempt in (False, True):
            write = videocopies.copy_failed(
                project_id,
                scene_index,
                task_uuid,
                key=key,
                code=code,
                message=message,
                attempts=attempts,
                now=self._now(),
                of_attempt=of_attempt,
            )
            found = await self._projects.update_one(write.filter, write.update)
            if found.matched_count == 1:
                return True
        return False

    async def with_failed_copies(self, *, limit: int = 100) -> list[Project]:
        """Projects with a video whose copy was given up on (operators: no index, a scan)."""
        marked = markers.ASSET_FAILURES
        found = self._projects.find(
            # a clip's mark is its scene index, an attempt's its task UUID
            {"$or": [{marked: {"$gte": 0}}, {marked: {"$gte": ""}}]},
            WITHOUT_REQUESTS_AND_EVENTS,
        )
        return [project_from_document(doc) for doc in await found.limit(limit).to_list()]

    async def copies_due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Projects with a success older than ``before`` the sweep has not seen stored."""
        return await self._due_by(markers.COPY_DUE, before=before, limit=limit)

    async def claim_copies(
        self, project_id: str, *, due_at: datetime, now: datetime
    ) -> tuple[Project, datetime] | None:
        """Take a project for one copy sweep (due again ``copy_sweep_after_s`` after ``now``,
        the sweep's clock): the project and the claim's mark; None if another replica did."""
        write = videocopies.claim_copies(project_id, due_at=due_at, now=now)
        doc = await self._projects.find_one_and_update(
            write.filter,
            write.update,
            projection=WITHOUT_REQUESTS_AND_EVENTS,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return project_from_document(doc), doc[markers.COPY_DUE]

    async def copies_swept(self, project: Project, *, claimed: datetime) -> None:
        """Every success of ``project`` (as claimed) is stored or given up on: unmark it."""
        write = videocopies.copies_swept(project.id, claimed=claimed, updated_at=project.updated_at)
        await self._projects.update_one(write.filter, write.update)
