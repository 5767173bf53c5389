"""MongoDB access for projects: one document per project, one conditional update per change."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.messages import Event
from reelflow_common.mongo import Database, Document
from reelflow_common.store import changes, eventlog
from reelflow_common.store.changes import NOT_TERMINAL, Change
from reelflow_common.store.cursor import decode_cursor, encode_cursor
from reelflow_common.store.documents import (
    PROJECT_INDEXES,
    clip_from_document,
    new_project_document,
    project_from_document,
)
from reelflow_common.store.errors import ContendedProject, IdempotencyConflict
from reelflow_common.store.models import (
    Clip,
    CreateResult,
    NewProject,
    Outcome,
    Project,
)
from reelflow_common.store.timefmt import as_utc, utcnow

IDEMPOTENCY_TTL = timedelta(hours=24)
_WITHOUT_EVENTS = {"events": 0}
#: attempts of one optimistic update; each failed one means another writer got there first
_MAX_ATTEMPTS = 100


class ProjectStore:
    """The ``projects`` collection."""

    def __init__(
        self,
        db: Database,
        *,
        event_log_size: int = 500,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._projects = db["projects"]
        self._event_log_size = event_log_size
        self._now = clock

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on; safe to call at every start."""
        await self._projects.create_indexes(PROJECT_INDEXES)

    # --- creating and reading -------------------------------------------------

    async def create(self, new: NewProject) -> CreateResult:
        """Store a new project, or return the one an earlier request with the same key made.

        The unique index on (tenant, key) decides races: of two concurrent requests
        with one key, one inserts and the other finds the first's project.
        """
        for _ in range(_MAX_ATTEMPTS):
            now = self._now()
            doc = new_project_document(
                new,
                project_id=str(uuid.uuid4()),
                task_uuids=[str(uuid.uuid4()) for _ in new.scenes],
                now=now,
            )
            try:
                await self._projects.insert_one(doc)
            except DuplicateKeyError:
                existing = await self._replay(new, now=now)
                if existing is not None:
                    return CreateResult(project=existing, created=False)
                continue  # the key was released (expired or gone): insert again
            return CreateResult(project=project_from_document(doc), created=True)
        raise ContendedProject("idempotency key kept changing hands")

    async def _replay(self, new: NewProject, *, now: datetime) -> Project | None:
        """The project an idempotency key still stands for; an expired key is released."""
        doc = await self._projects.find_one(
            {"tenant_id": new.tenant_id, "idempotency_key": new.idempotency_key},
            _WITHOUT_EVENTS,
        )
        if doc is None:
            return None
        if as_utc(doc["created_at"]) <= now - IDEMPOTENCY_TTL:
            await self._projects.update_one(
                {"_id": doc["_id"], "idempotency_key": new.idempotency_key},
                {"$unset": {"idempotency_key": ""}},
            )
            return None
        if doc.get("request_hash") != new.request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with another request body")
        return project_from_document(doc)

    async def get(self, project_id: str, *, tenant_id: str | None = None) -> Project | None:
        """The project, or None when there is none (or it belongs to another tenant)."""
        query: Document = {"_id": project_id}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        doc = await self._projects.find_one(query, _WITHOUT_EVENTS)
        return None if doc is None else project_from_document(doc)

    # --- the outbox flag --------------------------------------------------------

    async def mark_dispatched(self, project: Project) -> None:
        """Every SubmitClip of ``project``, as read, has been published.

        Conditional on the clips queued since then being the ones dispatched: a retry
        that queued new clips in between keeps the project undispatched for the sweeper.
        """
        await self._projects.update_one(
            {"_id": project.id, "undispatched_since": project.undispatched_since},
            {"$set": {"dispatched": True}},
        )

    async def undispatched(self, *, older_than: datetime, limit: int = 100) -> list[Project]:
        """Projects whose queued clips, queued before ``older_than``, may never have been published.

        Counted from when clips were last queued (creation or a retry), not from creation,
        so a retried project gets the same grace as a new one.
        """
        found = self._projects.find(
            {"dispatched": False, "undispatched_since": {"$lt": older_than}}, _WITHOUT_EVENTS
        )
        docs = await found.sort("undispatched_since", ASCENDING).limit(limit).to_list()
        return [project_from_document(doc) for doc in docs]

    # --- clip transitions -------------------------------------------------------

    async def start_submitting(self, project_id: str, task_uuid: str) -> Clip | None:
        """Claim a clip for (re)submission: the clip, or None when it is past that point.

        ``submitting`` reads as ``queued`` from outside, so this is no public change:
        no event and no ``seq``. A clip found ``submitting`` is returned again because
        the submitter that claimed it may have crashed; the task UUID makes a second
        submission of the same task harmless.
        """
        path = f"clips.{task_uuid}"
        allowed = [ClipStatus.QUEUED.value, ClipStatus.SUBMITTING.value]
        doc = await self._projects.find_one_and_update(
            {"_id": project_id, f"{path}.status": {"$in": allowed}},
            {
                "$set": {
                    f"{path}.status": ClipStatus.SUBMITTING.value,
                    f"{path}.updated_at": self._now(),
                }
            },
            projection={"model": 1, path: 1},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return clip_from_document(doc["clips"][task_uuid], model=doc["model"])

    async def mark_processing(
        self, project_id: str, task_uuid: str, *, submitted_at: datetime
    ) -> list[Event]:
        """Runware holds the task. ``[]`` when the clip was past ``queued`` already."""
        return await self._change_clip(
            project_id,
            task_uuid,
            allowed_from=(ClipStatus.QUEUED, ClipStatus.SUBMITTING),
            to=ClipStatus.PROCESSING,
            submitted_at=submitted_at,
        )

    async def record_success(
        self,
        project_id: str,
        task_uuid: str,
        *,
        video_url: str,
        video_uuid: str | None,
        cost: float | None,
        seed: int | None,
        completed_at: datetime,
    ) -> list[Event]:
        """The video is ready. ``[]`` when the clip was terminal already."""
        fields: dict[str, Any] = {
            "video_url": video_url,
            "video_uuid": video_uuid,
            "cost": cost,
            "completed_at": completed_at,
        }
        if seed is not None:
            fields["seed"] = seed
        return await self._change_clip(
            project_id, task_uuid, allowed_from=NOT_TERMINAL, to=ClipStatus.SUCCESS, **fields
        )

    async def record_failure(
        self,
        project_id: str,
        task_uuid: str,
        *,
        code: str,
        message: str,
        completed_at: datetime,
        allowed_from: Collection[ClipStatus] = NOT_TERMINAL,
    ) -> list[Event]:
        """The task failed. ``[]`` when the clip was not in ``allowed_from`` (e.g. terminal)."""
        return await self._change_clip(
            project_id,
            task_uuid,
            allowed_from=allowed_from,
            to=ClipStatus.FAILED,
            error={"code": code, "message": message},
            completed_at=completed_at,
        )

    async def _change_clip(self, project_id: str, task_uuid: str, **how: Any) -> list[Event]:
        def decide(project: Project, now: datetime) -> Change | None:
            return changes.clip_change(project, task_uuid, now=now, **how)

        outcome = await self._update(project_id, decide)
        return [] if outcome is None else outcome.events

    # --- project operations -----------------------------------------------------

    async def cancel(self, project_id: str, *, tenant_id: str) -> Outcome | None:
        """Cancel every clip not yet terminal. None when the tenant has no such project."""

        def decide(project: Project, now: datetime) -> Change | None:
            return changes.cancel_change(project, now=now)

        return await self._update(project_id, decide, tenant_id=tenant_id)

    async def retry_failed(self, project_id: str, *, tenant_id: str) -> Outcome | None:
        """Give every failed clip a new task (``Outcome.new_clips``), for the caller to submit."""

        def decide(project: Project, now: datetime) -> Change | None:
            return changes.retry_change(project, now=now)

        return await self._update(project_id, decide, tenant_id=tenant_id)

    async def _update(
        self,
        project_id: str,
        decide: Callable[[Project, datetime], Change | None],
        *,
        tenant_id: str | None = None,
    ) -> Outcome | None:
        """Read, decide, write if ``seq`` has not moved; again when it has.

        None when there is no such project. Without a change, the project as read and
        no events: a duplicate or a late message leaves the document untouched.
        """
        for _ in range(_MAX_ATTEMPTS):
            project = await self.get(project_id, tenant_id=tenant_id)
            if project is None:
                return None
            change = decide(project, self._now())
            if change is None:
                return Outcome(project=project, events=[])
            doc = await self._projects.find_one_and_update(
                change.filter(project_id),
                change.update(event_log_size=self._event_log_size),
                projection=_WITHOUT_EVENTS,
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return Outcome(project=project_from_document(doc), events=change.events)
        raise ContendedProject(f"project {project_id} changed under {_MAX_ATTEMPTS} attempts")

    # --- the event log ------------------------------------------------------------

    async def events_after(self, project_id: str, after_seq: int) -> list[Event] | None:
        """The changes after ``after_seq``; None when they can no longer all be replayed."""
        doc = await self._projects.find_one({"_id": project_id}, {"seq": 1, "events": 1})
        return None if doc is None else eventlog.replay_after(doc["seq"], doc["events"], after_seq)

    async def events_for_clip(self, project_id: str, task_uuid: str) -> list[Event]:
        """The stored events about a clip, each followed by the ``project.finished`` it caused.

        A handler that crashed between its write and its publish finds the write
        already done on redelivery; it publishes these again, and consumers drop
        the ``seq`` they already have.
        """
        doc = await self._projects.find_one({"_id": project_id}, {"events": 1})
        return [] if doc is None else eventlog.about_clip(doc["events"], task_uuid)

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
            created_at, project_id = decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": project_id}},
            ]
        found = self._projects.find(query, _WITHOUT_EVENTS)
        found = found.sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1)
        projects = [project_from_document(doc) for doc in await found.to_list()]
        if len(projects) <= limit:
            return projects, None
        last = projects[limit - 1]
        return projects[:limit], encode_cursor(last.created_at, last.id)
