"""MongoDB access for projects: one insert per project, one guarded update per public change
(the changes of one project's clips that come together: one update for all, :mod:`together`).

The decisions are :mod:`transitions` (pure); this module applies them, turns
what an update returned into the events to publish (:mod:`eventlog`), finishes
a project whose last open clip ended, and repairs what a crash may have left
undone when a duplicate or redelivered message finds its change already made.
State changes are written with majority write concern; the repair read uses
majority read concern, so "already terminal" is never a write a failover rolls back.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from reelflow_common.domain import (
    ProjectStatus,
)
from reelflow_common.logging import get_logger
from reelflow_common.messages import Event
from reelflow_common.store import transitions
from reelflow_common.store.cancel import ProjectCancel
from reelflow_common.store.clipwrites import ClipWrites
from reelflow_common.store.copies import VideoCopies
from reelflow_common.store.creation import ProjectCreation
from reelflow_common.store.documents import (
    WITHOUT_EVENTS,
    project_from_document,
)
from reelflow_common.store.leases import ChainLeases
from reelflow_common.store.models import (
    ClipState,
    Lease,
    Project,
)
from reelflow_common.store.owed import owed_settlements
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.retry import ProjectRetry
from reelflow_common.store.transitions import Write

log = get_logger(__name__)


class ProjectStore(
    ProjectCreation,
    ProjectCancel,
    ProjectRetry,
    ProjectReads,
    ChainLeases,
    ClipWrites,
    VideoCopies,
):
    """The ``projects`` collection."""

    # --- the reconciler -------------------------------------------------------------------

    async def due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Generating projects whose earliest lease ran out before ``before``: (id, due_at)."""
        found = self._projects.find(
            {"status": ProjectStatus.GENERATING.value, "due_at": {"$lt": before}},
            {"due_at": 1},
        )
        docs = await found.sort("due_at", 1).limit(limit).to_list()
        return [(doc["_id"], doc["due_at"]) for doc in docs]

    async def claim(self, project_id: str, *, due_at: datetime, until: datetime) -> Project | None:
        """Take a due project for one pass (with its requests); None if another reconciler did."""
        return await self._claimed(transitions.claim(project_id, due_at=due_at, until=until))

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
        write = transitions.release(project_id, claimed=claimed, due_at=due_at)
        await self._projects.update_one(write.filter, write.update)

    async def rearm(self, project_id: str, clip: ClipState, *, token: str, until: datetime) -> bool:
        """Lease an open clip, as read, to a new chain; False if it moved since the read."""
        write = transitions.rearm(project_id, clip, new_token=token, until=until)
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def attempts_due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Projects (finished ones too) with an open attempt whose lease may have run out
        before ``before``: (id, ``attempts_due_at``)."""
        return await self._due_by(transitions.ATTEMPTS_DUE, before=before, limit=limit)

    async def claim_attempts(
        self, project_id: str, *, due_at: datetime, until: datetime
    ) -> Project | None:
        """Take a project's due attempts for one pass (with its requests); None if taken."""
        return await self._claimed(
            transitions.claim_attempts(project_id, due_at=due_at, until=until)
        )

    async def release_attempts(
        self, project_id: str, *, claimed: datetime, due_at: datetime | None
    ) -> None:
        """End a pass over the attempts: due next at ``due_at`` (None: none is open)."""
        write = transitions.release_attempts(project_id, claimed=claimed, due_at=due_at)
        await self._projects.update_one(write.filter, write.update)

    async def settlements_due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Projects with a settlement owed since before ``before`` (an end no message stands
        behind): (id, ``settle_due_at``)."""
        return await self._due_by(transitions.SETTLE_DUE, before=before, limit=limit)

    async def settle_owed(self, project_id: str, *, due_at: datetime, now: datetime) -> list[str]:
        """One settle sweep of a project due at ``due_at``: the keys of the settlements the
        ledger applied now (lost ones: their writer stopped before the ``$inc``).

        Claims it (``settle_due_at`` moved to ``now``: another replica's sweep of the same
        mark matches nothing), then takes the repair path for each owed settlement: made
        unless the project records it, a no-op on the ledger if its list shows it, and
        recorded. Only the settlement owed (its key on the ledger, which names its charge),
        never another end of the same task (one the release before settled has no record,
        and the ledger's list may have forgotten it).
        Then the marks go, guarded on the owed list as read and on this sweep's claim; an
        entry found neither made nor on its clip is logged (``settlement_owed_not_found``:
        a recount is due). Nothing claimed (another replica's sweep took it): none.
        """
        claim = transitions.claim_owed(project_id, due_at=due_at, now=now)
        doc = await self._projects.find_one_and_update(
            claim.filter,
            claim.update,
            projection={
                "tenant_id": 1,
                "created_at": 1,
                "clips": 1,
                transitions.SETTLED: 1,
                transitions.SETTLE_OWED: 1,
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return []
        entries: list[str] = doc.get(transitions.SETTLE_OWED) or []
        owed, not_found = owed_settlements(doc, entries)
        if not_found:
            # Neither made (recorded) nor on its clip any more: the ledger's open and
            # committed stay too high until an operator recounts them.
            log.warning("settlement_owed_not_found", project_id=project_id, entries=not_found)
        applied = await self._settle_all(doc, owed)
        swept = transitions.owed_swept(project_id, owed_as_read=entries, claimed=now)
        await self._projects.update_one(swept.filter, swept.update)
        return applied

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
        write = transitions.rearm_attempt(
            project_id, scene_index, task_uuid, lease, new_token=token, until=until
        )
        found = await self._projects.update_one(write.filter, write.update)
        return found.matched_count == 1

    async def drop_stray_attempt(self, project_id: str, clip: ClipState, task_uuid: str) -> bool:
        """Repair: remove a stray leased attempt of the open (or ended) clip's own task, as
        read (:func:`transitions.drop_stray_attempt`); False if it is none, or moved since."""
        write = transitions.drop_stray_attempt(project_id, clip, task_uuid)
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
