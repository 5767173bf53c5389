"""The reconcilers' queries: the projects due (a lease ran out), claimed for one pass and
released; a lost chain re-armed (a clip's, or an ``attempts`` entry's); a stray attempt
removed; and a project finished that a crash left unfinished."""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from reelflow_common.domain import ProjectStatus
from reelflow_common.messages import Event
from reelflow_common.mongo import Document
from reelflow_common.store.documents import (
    WITHOUT_EVENTS,
    WITHOUT_REQUESTS_AND_EVENTS,
    project_from_document,
)
from reelflow_common.store.models import ClipState, Lease, Project
from reelflow_common.store.transitions import markers, reconciler
from reelflow_common.store.transitions.write import Write
from reelflow_common.store.writes import ProjectWrites


class ReconcilerQueries(ProjectWrites):
    """What the reconciler and the attempts reconciler read and write."""

    async def due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Generating projects whose earliest lease ran out before ``before``: (id, due_at)."""
        found = self._projects.find(
            {"status": ProjectStatus.GENERATING.value, "due_at": {"$lt": before}},
            {"due_at": 1},
        )
        docs = await found.sort("due_at", 1).limit(limit).to_list()
        return [(doc["_id"], doc["due_at"]) for doc in docs]

    async def past_lease(
        self, *, before: datetime, tenant_id: str | None = None, limit: int
    ) -> list[Project]:
        """What :meth:`due` finds, whole (without requests and events) and of one tenant if
        given, earliest lease first: for an operator (``reelflow-admin project list
        --past-lease``). The ``reconcile_due`` index answers it (with a tenant, also
        ``tenant_status_newest``)."""
        query: Document = {"status": ProjectStatus.GENERATING.value, "due_at": {"$lt": before}}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        found = self._projects.find(query, WITHOUT_REQUESTS_AND_EVENTS)
        docs = await found.sort("due_at", 1).limit(limit).to_list()
        return [project_from_document(doc) for doc in docs]

    async def claim(self, project_id: str, *, due_at: datetime, until: datetime) -> Project | None:
        """Take a due project for one pass (with its requests); None if another reconciler did."""
        return await self._claimed(reconciler.claim(project_id, due_at=due_at, until=until))

    async def _claimed(self, claim: Write) -> Project | None:
        """Apply a reconciler's claim; the project as it left it, or None if not applied."""
        doc = await self._projects.find_one_and_update(
            claim.filter,
            claim.update,
            projection=WITHOUT_EVENTS,
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else project_from_document(doc)

    async def release(self, project_id: str, *, claimed: datetime, due_at: datetime) -> None:
        """End a pass: the project is due next at ``due_at``."""
        write = reconciler.release(project_id, claimed=claimed, due_at=due_at)
        await self._projects.update_one(write.filter, write.update)

    async def rearm(self, project_id: str, clip: ClipState, *, token: str, until: datetime) -> bool:
        """Lease an open clip, as read, to a new chain; False if it moved since the read."""
        write = reconciler.rearm(project_id, clip, new_token=token, until=until)
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def attempts_due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Projects (finished ones too) with an open attempt whose lease may have run out
        before ``before``: (id, ``attempts_due_at``)."""
        return await self._due_by(markers.ATTEMPTS_DUE, before=before, limit=limit)

    async def claim_attempts(
        self, project_id: str, *, due_at: datetime, until: datetime
    ) -> Project | None:
        """Take a project's due attempts for one pass (with its requests); None if taken."""
        return await self._claimed(
            reconciler.claim_attempts(project_id, due_at=due_at, until=until)
        )

    async def release_attempts(
        self, project_id: str, *, claimed: datetime, due_at: datetime | None
    ) -> None:
        """End a pass over the attempts: due next at ``due_at`` (None: none is open)."""
        write = reconciler.release_attempts(project_id, claimed=claimed, due_at=due_at)
        await self._projects.update_one(write.filter, write.update)

    async def rearm_attempt(
        self,
        project_id: str,
        scene_index: int,
        task_uuid: str,
        lease: Lease,
        *,
        token: str,
        until: datetime,
    ) -> bool:
        """Lease a replaced task, whose lease as read ran out, to a new chain; False if it moved."""
        write = reconciler.rearm_attempt(
            project_id, scene_index, task_uuid, lease, new_token=token, until=until
        )
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def drop_stray_attempt(self, project_id: str, clip: ClipState, task_uuid: str) -> bool:
        """Repair: remove a stray leased attempt of the open (or ended) clip's own task, as
        read (:func:`reconciler.drop_stray_attempt`); False if it is none, or moved since."""
        write = reconciler.drop_stray_attempt(project_id, clip, task_uuid)
        if write is None:
            return False
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def finish_if_done(self, project: Project) -> list[Event]:
        """Finish a project none of whose clips is pending (a crash before its finisher)."""
        head = {
            "tenant_id": project.tenant_id,
            "seq": project.seq,
            "counts": project.counts.model_dump(),
            "status": project.status.value,
            "correlation_id": project.correlation_id,
        }
        return await self._finish_if_done(project.id, head)
