"""Reads of projects: one project or a page of a tenant's, a clip with its task or its
request, and the event log (for a replay). Nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import DESCENDING

from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.messages import Event
from reelflow_common.mongo import Document
from reelflow_common.store.collection import ProjectCollection
from reelflow_common.store.cursor import OTHER_TENANT, decode_cursor, encode_cursor
from reelflow_common.store.documents import (
    LOG_HEAD,
    WITHOUT_EVENTS,
    WITHOUT_REQUESTS_AND_EVENTS,
    clip_from_document,
    clip_path,
    log_head,
    project_from_document,
    unpack_request,
    unpack_requests,
)
from reelflow_common.store.errors import InvalidCursor
from reelflow_common.store.eventlog import materialize, replay_after
from reelflow_common.store.models import Project, ProjectScenesView
from reelflow_common.store.results import ClipTask, ClipWithRequest
from reelflow_common.store.timefmt import as_utc


class ProjectReads(ProjectCollection):
    """Reads of the ``projects`` collection for the api, the notifier and operators."""

    async def get(
        self, project_id: str, *, tenant_id: str | None = None, with_requests: bool = False
    ) -> Project | None:
        """The project, or None when there is none (or it belongs to another tenant)."""
        query: Document = {"_id": project_id}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        projection = WITHOUT_EVENTS if with_requests else WITHOUT_REQUESTS_AND_EVENTS
        doc = await self._projects.find_one(query, projection)
        return None if doc is None else project_from_document(doc)

    async def get_many(self, refs: Sequence[tuple[str, str]]) -> list[Project | None]:
        """``get(project_id, tenant_id=tenant_id)`` of each pair, in one query."""
        query = {
            "_id": {"$in": list({project_id for project_id, _tenant in refs})},
            "tenant_id": {"$in": list({tenant_id for _project, tenant_id in refs})},
        }
        found = self._projects.find(query, WITHOUT_REQUESTS_AND_EVENTS)
        read = {doc["_id"]: project_from_document(doc) async for doc in found}
        projects: list[Project | None] = []
        for project_id, tenant_id in refs:
            project = read.get(project_id)
            projects.append(
                project if project is not None and project.tenant_id == tenant_id else None
            )
        return projects

    async def scenes(self, project_id: str, *, tenant_id: str) -> ProjectScenesView | None:
        """What the project asked for (``GET /v1/projects/{id}/scenes``); None when there is no
        such project of this tenant.

        One indexed read of the ``_id`` that returns the title, the model and the requests:
        none of the clips' states, which every other read of a project decodes. The requests
        are written once, with the defaults the API applied, and never change.
        """
        query = {"_id": project_id, "tenant_id": tenant_id}
        doc = await self._projects.find_one(query, {"title": 1, "model": 1, "requests": 1})
        if doc is None:
            return None
        stored = doc.get("requests")
        requests = [] if stored is None else unpack_requests(stored)
        return ProjectScenesView.of(project_id, doc["title"], doc["model"], requests)

    async def clip_task(
        self, project_id: str, scene_index: int, task_uuid: str | None = None
    ) -> ClipTask | None:
        """The clip's current task and its status, and whether its ``attempts`` has an entry of
        ``task_uuid`` (the chain's task); None when there is no such clip (the project was
        deleted).

        What a submit chain reads before a submit that may not be wanted any more
        (``reelflow_submitter.service.before_resubmit``). One indexed read of the ``_id``,
        two fields (three with ``task_uuid``: that entry's status).
        """
        path = clip_path(scene_index)
        fields = {f"{path}.task_uuid": 1, f"{path}.status": 1}
        if task_uuid is not None:
            fields[f"{path}.attempts.{task_uuid}.status"] = 1
        found = await self._projects.find_one({"_id": project_id}, fields)
        clip = None if found is None else found.get("clips", {}).get(str(scene_index))
        if clip is None:
            return None
        in_attempts = task_uuid is not None and task_uuid in (clip.get("attempts") or {})
        return ClipTask(clip["task_uuid"], ClipStatus(clip["status"]), in_attempts)

    async def clip_with_request(self, project_id: str, scene_index: int) -> ClipWithRequest | None:
        """One clip as it is now, with what it asked Runware for; None when there is no such
        clip (the project was deleted).

        What the webhook hint learns a finished clip's profile from: one indexed read of the
        ``_id`` that returns the model, this clip and the requests — not the project's other
        clips' states. The requests are one opaque value, read whole (up to 50 scenes'
        prompts) but decoded as a model for this scene only.
        """
        fields = {"model": 1, "created_at": 1, clip_path(scene_index): 1, "requests": 1}
        doc = await self._projects.find_one({"_id": project_id}, fields)
        raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
        if doc is None or raw_clip is None:
            return None
        clip = clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"]))
        stored = doc.get("requests")
        request = None if stored is None else unpack_request(stored, scene_index)
        return ClipWithRequest(doc["model"], clip, request)

    async def get_with_events(self, project_id: str) -> tuple[Project, list[Event]] | None:
        """The whole project, with its requests, and the events still in its log (operators)."""
        doc = await self._projects.find_one({"_id": project_id})
        if doc is None:
            return None
        return project_from_document(doc), materialize(log_head(project_id, doc), doc["events"])

    async def events_after(self, project_id: str, after_seq: int) -> list[Event] | None:
        """The changes after ``after_seq``; None when they can no longer all be replayed."""
        doc = await self._projects.find_one({"_id": project_id}, LOG_HEAD | {"events": 1})
        if doc is None:
            return None
        return replay_after(log_head(project_id, doc), doc["events"], after_seq)

    # Last in the class on purpose: below this method, ``list`` names it, not the builtin.
    async def list(
        self,
        tenant_id: str,
        *,
        status: ProjectStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Project], str | None]:
        """A page of the tenant's projects, newest first, and the cursor of the next page."""
        query: Document = {"tenant_id": tenant_id}
        if status is not None:
            query["status"] = status.value
        if cursor is not None:
            created_at, project_id = decode_cursor(
                cursor, status=None if status is None else status.value
            )
            # The cursor names no tenant: its last project does (one read, by _id).
            mine = {"_id": project_id, "tenant_id": tenant_id}
            if await self._projects.find_one(mine, {"_id": 1}) is None:
                raise InvalidCursor(OTHER_TENANT)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": project_id}},
            ]
        found = self._projects.find(query, WITHOUT_REQUESTS_AND_EVENTS)
        found = found.sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1)
        projects = [project_from_document(doc) for doc in await found.to_list()]
        if len(projects) <= limit:
            return projects, None
        last = projects[limit - 1]
        return projects[:limit], encode_cursor(
            last.created_at,
            last.id,
            status=None if status is None else status.value,
        )
