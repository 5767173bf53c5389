"""Creating projects: one insert per project (inserted together with the creates that come
meanwhile, :mod:`inserts`), or the project an earlier request with the same
Idempotency-Key made."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from reelflow_common.mongo import REREAD_ATTEMPTS
from reelflow_common.store.collection import ProjectCollection
from reelflow_common.store.documents import (
    WITHOUT_REQUESTS_AND_EVENTS,
    new_project_document,
    project_from_document,
)
from reelflow_common.store.errors import IdempotencyConflict, IdempotencyKeyChurn
from reelflow_common.store.inserts import on_id
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import CreateResult, NewProject, Project
from reelflow_common.store.timefmt import as_utc

IDEMPOTENCY_TTL = timedelta(hours=24)


class ProjectCreation(ProjectCollection):
    """New projects, at most one per (tenant, Idempotency-Key) while the key stands."""

    async def create(self, new: NewProject, *, project_id: str | None = None) -> CreateResult:
        """Store a new project (one insert), or return the one an earlier request with its key made.

        The unique index on (tenant, key) decides races: of two concurrent requests
        with one key, one inserts and the other finds the first's project. Projects
        created while one insert is out go in the next, together (:func:`inserts.insert_batch`).
        ``project_id``: the new project's id (a fresh UUID by default), for a caller that
        must look the project up after an insert whose outcome it does not know; it must
        be a fresh UUID too (a project with it is taken to be this create's). Every
        attempt uses it: an insert is tried again only after the idempotency key refused
        it, so the id is still free.
        """
        if project_id is None:
            project_id = str(uuid.uuid4())
        # Each failed insert means an expired idempotency key was released: insert again.
        for _ in range(REREAD_ATTEMPTS):
            now = self._now()
            doc = new_project_document(
                new,
                project_id=project_id,
                task_uuids=[str(uuid.uuid4()) for _ in new.scenes],
                tokens=[new_token() for _ in new.scenes],
                now=now,
                lease_until=now + self._lease,
            )
            try:
                await self._inserts.submit(doc)
            except DuplicateKeyError as exc:
                # The id is this create's alone: a project with it is this document, sent
                # twice (the driver retried an insert that had landed), whichever unique
                # index the server names. Without a key only the id can be taken (the
                # key's index holds only projects with one).
                if on_id(exc) or new.idempotency_key is None:
                    return CreateResult(project=project_from_document(doc), created=True)
                existing = await self._replay(new, now=now)
                if existing is not None and existing.id == project_id:
                    return CreateResult(project=project_from_document(doc), created=True)
                if existing is not None:
                    return CreateResult(project=existing, created=False)
                continue  # the key was released (expired or gone): insert again
            return CreateResult(project=project_from_document(doc), created=True)
        raise IdempotencyKeyChurn(
            "an Idempotency-Key kept changing hands; the request may be retried"
        )

    async def replay_of(self, new: NewProject) -> Project | None:
        """The project an earlier request with ``new``'s Idempotency-Key made, if any.

        For a caller that must know before it creates (a reservation would count the
        replay's clips twice); raises ``IdempotencyConflict`` like :meth:`create`.
        """
        if new.idempotency_key is None:
            return None
        return await self._replay(new, now=self._now())

    async def _replay(self, new: NewProject, *, now: datetime) -> Project | None:
        """The project an idempotency key still stands for; an expired key is released."""
        doc = await self._projects.find_one(
            {"tenant_id": new.tenant_id, "idempotency_key": new.idempotency_key},
            WITHOUT_REQUESTS_AND_EVENTS,
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
