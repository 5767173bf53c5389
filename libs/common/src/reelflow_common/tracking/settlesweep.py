"""The settle sweep: a settlement no message stands behind is made, however its writer stopped.

A clip's end settles its charge on the tenant's ledger with one ``$inc`` after the
write that records the end. When a message stands behind that write, its redelivery
repeats a settlement a crash cut off (the repair path). A reconciler's pass and the
api's cancel have none: their write marks the settlement owed instead, in the same
update (``settle_due_at``, ``settle_owed``: :func:`~reelflow_common.store.transitions.owing.owed`).
Every ``reconcile_interval_s`` each poller looks for projects marked more than
``reconcile_grace_s`` ago (index ``settle_due``) and claims each with a conditional update
on the mark it read (so one replica sweeps a project at a time; no leader), settles what
is owed through the repair path (a no-op where the ledger's list of recent keys shows it
made), records it on the project, and unmarks it unless a writer owed another meanwhile.
"""

from __future__ import annotations

from datetime import timedelta

from reelflow_common.clock import Clock
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.store import ProjectStore

log = get_logger(__name__)


class SettleSweep:
    """One sweep at a time: :meth:`run_once` every ``reconcile_interval_s``."""

    def __init__(
        self, projects: ProjectStore, *, clock: Clock, after_s: float, batch_size: int
    ) -> None:
        self._projects = projects
        self._now = clock
        self._after = timedelta(seconds=after_s)
        self._batch_size = batch_size

    async def run_once(self) -> int:
        """Sweep every project due now (up to a batch); how many lost settlements it made."""
        now = self._now()
        made = 0
        for project_id, due_at in await self._projects.settlements_due(
            before=now - self._after, limit=self._batch_size
        ):
            with bound_context(project_id=project_id):
                try:
                    keys = await self._projects.settle_owed(project_id, due_at=due_at, now=now)
                except Exception:
                    # One project's trouble (a bug, an outage) must not stall the others;
                    # its mark stays, so a later sweep takes it again.
                    log.exception("settle_sweep_failed")
                    continue
            if keys:
                log.warning("settlements_swept", project_id=project_id, keys=keys)
            made += len(keys)
        return made
