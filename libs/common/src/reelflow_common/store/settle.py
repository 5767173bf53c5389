"""The settle sweep's queries: the projects owing a settlement that no message stands
behind (an end written by a reconciler's pass or the api's cancel), and one sweep of
such a project: claimed, its owed settlements made (:mod:`owed`), its marks removed."""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from reelflow_common.logging import get_logger
from reelflow_common.store.owed import owed_settlements
from reelflow_common.store.transitions import markers, owing
from reelflow_common.store.writes import ProjectWrites

log = get_logger(__name__)


class SettlementsOwed(ProjectWrites):
    """The settlements owed by ends no message stands behind, made by the settle sweep."""

    async def settlements_due(self, *, before: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Projects with a settlement owed since before ``before`` (an end no message stands
        behind): (id, ``settle_due_at``)."""
        return await self._due_by(markers.SETTLE_DUE, before=before, limit=limit)

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
        claim = owing.claim_owed(project_id, due_at=due_at, now=now)
        doc = await self._projects.find_one_and_update(
            claim.filter,
            claim.update,
            projection={
                "tenant_id": 1,
                "created_at": 1,
                "clips": 1,
                markers.SETTLED: 1,
                markers.SETTLE_OWED: 1,
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return []
        entries: list[str] = doc.get(markers.SETTLE_OWED) or []
        owed, not_found = owed_settlements(doc, entries)
        if not_found:
            # Neither made (recorded) nor on its clip any more: the ledger's open and
            # committed stay too high until an operator recounts them.
            log.warning("settlement_owed_not_found", project_id=project_id, entries=not_found)
        applied = await self._settle_all(doc, owed)
        swept = owing.owed_swept(project_id, owed_as_read=entries, claimed=now)
        await self._projects.update_one(swept.filter, swept.update)
        return applied
