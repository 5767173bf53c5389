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

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from pymongo import ReturnDocument
from pymongo.errors import (
    PyMongoError,
)

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import (
    ClipStatus,
    ProjectStatus,
)
from reelflow_common.logging import get_logger
from reelflow_common.messages import Event
from reelflow_common.mongo import Document
from reelflow_common.store import transitions
from reelflow_common.store.cancel import ProjectCancel
from reelflow_common.store.clipwrites import ClipWrites
from reelflow_common.store.collection import REPAIR_ATTEMPTS
from reelflow_common.store.copies import VideoCopies
from reelflow_common.store.creation import ProjectCreation
from reelflow_common.store.documents import (
    LOG_HEAD,
    WITHOUT_EVENTS,
    clip_from_document,
    clip_path,
    project_from_document,
)
from reelflow_common.store.leases import ChainLeases, new_token
from reelflow_common.store.models import (
    ClipState,
    Lease,
    Outcome,
    Project,
)
from reelflow_common.store.owed import owed_settlements
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions import Write

log = get_logger(__name__)


#: what a retry did with one failed clip: took its late video, watched its task again, or
#: gave it a new task to submit
#: what a retry did to one clip; ``busy``: nothing, the clip moved at every try (Outcome.busy)
_Retried = Literal["took", "rewatch", "resubmit", "busy"]

#: holds money for the failed clips a retry would follow again: a charge per scene, or raises
Reserve = Callable[[Project, list[ClipState]], Awaitable[dict[int, Charge] | None]]


class ProjectStore(
    ProjectCreation, ProjectCancel, ProjectReads, ChainLeases, ClipWrites, VideoCopies
):
    """The ``projects`` collection."""

    # --- the API's operations ----------------------------------------------------------

    async def retry(
        self,
        project_id: str,
        *,
        tenant_id: str,
        correlation_id: str | None = None,
        reserve: Reserve | None = None,
    ) -> Outcome | None:
        """Follow every failed clip again: a new task where Runware failed the old one, the same
        task where only our ceiling ran out (``timedOut``) or where Runware runs it after all
        (found there after the clip failed: ``ClipState.runs_at_runware``); a clip with a late
        video takes it (nothing bought). Cancelled clips stay cancelled.

        The caller publishes ``SubmitClip`` for ``Outcome.resubmit`` and ``CheckClip``
        for ``Outcome.rewatch``, from the project returned (read with its requests).
        ``reserve`` holds the failed clips' money on the tenant's ledger first (or raises
        ``LimitExceeded``: nothing is retried); what no clip holds is released: what a
        concurrent retry made unneeded, and, when an error interrupts the clips' writes,
        the charges of the clips not written (:meth:`_give_back_unheld`).
        """
        project = await self.get(project_id, tenant_id=tenant_id, with_requests=reserve is not None)
        if project is None:
            return None
        charges: dict[int, Charge] = {}
        failed = [clip for clip in project.clips if clip.status is ClipStatus.FAILED]
        # A clip with a late video takes it: nothing to buy or hold money for.
        to_follow = [clip for clip in failed if clip.late_video() is None]
        if reserve is not None and to_follow:
            charges = await reserve(project, to_follow) or {}
        events: list[Event] = []
        resubmit: list[int] = []
        rewatch: list[int] = []
        busy: list[int] = []
        # Those followed again first: they reopen the project, so one that takes its video
        # after them does not finish it on the way.
        took = False
        untried = dict(charges)  # by scene: the charges no write has carried yet
        out: tuple[int, Charge] | None = None  # the clip being written, and the charge it carries
        try:
            for clip in [*to_follow, *(clip for clip in failed if clip not in to_follow)]:
                charge = untried.pop(clip.scene_index, None)
                out = None if charge is None else (clip.scene_index, charge)
                done, applied = await self._retry_clip(
                    project_id, tenant_id, clip, charge, correlation_id
                )
                out = None
                if charge is not None and done in (None, "took", "busy"):
                    # A concurrent retry got there first (it sends the commands, and
                    # reserved), the clip took a late video that came meanwhile, or it
                    # kept moving and was left as it was.
                    await self.ledgers.give_back(tenant_id, [charge])
                events += applied
                if done == "took":
                    took = True
                elif done == "busy":
                    busy.append(clip.scene_index)
                elif done is not None:
                    (rewatch if done == "rewatch" else resubmit).append(clip.scene_index)
        except BaseException:
            try:
                await self._give_back_unheld(project_id, tenant_id, untried.values(), out)
            except Exception as exc:  # the retry's own error is the one to raise
                log.warning("reservation_not_released", project_id=project_id, error=repr(exc))
            raise
        if took:
            head = await self._projects.find_one({"_id": project_id}, LOG_HEAD)
            assert head is not None  # projects are never deleted
            events += await self._finish_if_done(project_id, head)
        if not events:
            return Outcome(project=project, events=[], busy=busy)
        after = await self.get(project_id, with_requests=True)
        assert after is not None  # projects are never deleted
        return Outcome(project=after, events=events, resubmit=resubmit, rewatch=rewatch, busy=busy)

    async def _give_back_unheld(
        self,
        project_id: str,
        tenant_id: str,
        untried: Iterable[Charge],
        out: tuple[int, Charge] | None,
    ) -> None:
        """Give back the charges of an interrupted retry that no clip holds: at once those of
        clips it never wrote; the charge of the clip whose write was out (``out``: its scene)
        only if a read of the clip shows that write did not land. A failed read keeps it: the
        tenant's room is then understated, never overstated."""
        await self.ledgers.give_back(tenant_id, untried)
        if out is None:
            return
        scene_index, charge = out
        try:
            clip = await self._read_clip(project_id, scene_index)
        except PyMongoError as exc:
            log.warning(
                "reservation_not_released",
                tenant_id=tenant_id,
                project_id=project_id,
                scene_index=scene_index,
                error=repr(exc),
            )
            return
        if clip is None or not clip.holds(charge):
            await self.ledgers.give_back(tenant_id, [charge])

    async def _retry_clip(
        self,
        project_id: str,
        tenant_id: str,
        clip: ClipState,
        charge: Charge | None,
        correlation_id: str | None,
    ) -> tuple[_Retried | None, list[Event]]:
        """Retry one failed clip as read; read again while a concurrent writer moves it (an
        entry added to its ``attempts``: a given-up task found, a late video; a settlement
        owed), a bounded few times. What was done (``took``, ``rewatch``, ``resubmit``;
        None: nothing, the clip is no longer failed; ``busy``: nothing, it moved at every
        try and is still failed) and its events.

        A retry moves the clip on, after which a settlement one of its ends owes (marked by a
        writer no message stands behind, who may have stopped before the ledger's ``$inc``)
        may not be found on it any more: a rewatch replaces the clip's charge and end, a
        taken video of its own task its end. So (every retry write alike: one rule) a read
        that shows the clip owing one makes it first, from the clip as read, and the write
        is guarded on the project's owed list as read (:meth:`_owed_made`).
        """
        read: Document | None = None  # the clip's project as last read here, owed list and all
        for _ in range(REPAIR_ATTEMPTS):
            if clip.status is not ClipStatus.FAILED:
                return None, []  # a concurrent retry took it
            now = self._now()
            taken = transitions.take_late_video(
                project_id,
                tenant_id,
                clip,
                now=now,
                lease_until=now + self._lease,
                correlation_id=correlation_id,
                log_size=self._log_size,
            )
            if taken is not None:
                # Applied: it reopened the project, which the retry finishes once, after all
                # its clips.
                taken = await self._owed_made(taken, clip.scene_index, read)
                applied = await self._apply(taken, project_id, finish=False)
                if applied is not None:
                    return "took", applied
            else:
                common: dict[str, Any] = {
                    "token": new_token(),
                    "now": now,
                    "lease_until": now + self._lease,
                    "correlation_id": correlation_id,
                    "log_size": self._log_size,
                    "charge": charge,
                }
                timed_out = (clip.error or {}).get("code") == transitions.TIMED_OUT
                same_task = timed_out or clip.runs_at_runware() is not None
                if same_task:
                    write = transitions.rewatch(project_id, tenant_id, clip, **common)
                else:
                    write = transitions.retry_with_new_task(
                        project_id, tenant_id, clip, new_task_uuid=str(uuid.uuid4()), **common
                    )
                write = await self._owed_made(write, clip.scene_index, read)
                applied = await self._apply(write, project_id)
                if applied is not None:
                    return ("rewatch" if same_task else "resubmit"), applied
            found = await self._read_owing(project_id, clip.scene_index, tenant_id=tenant_id)
            if found is None:
                return None, []
            clip, read = found
        return ("busy" if clip.status is ClipStatus.FAILED else None), []

    async def _read_owing(
        self, project_id: str, scene_index: int, *, tenant_id: str
    ) -> tuple[ClipState, Document] | None:
        """One clip as it is now (majority read), and its project as read with it: its owed
        list and ``settled``, to build a retry's write from again (:meth:`_owed_made`)."""
        doc = await self._majority_reads.find_one(
            {"_id": project_id, "tenant_id": tenant_id},
            {
                "tenant_id": 1,
                "created_at": 1,
                clip_path(scene_index): 1,
                transitions.SETTLED: 1,
                transitions.SETTLE_OWED: 1,
            },
        )
        raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
        if doc is None or raw_clip is None:
            return None
        return clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"])), doc

    async def _owed_made(self, write: Write, scene_index: int, read: Document | None) -> Write:
        """``write``, a retry of the scene's clip as ``read`` (:meth:`_read_owing`), once the
        settlements the project marks owed for that clip and does not record are made from it
        (a no-op on the ledger where its list shows one made): guarded on the owed list as
        read. ``read`` None (the retry's first read, which does not say): guarded on none
        owed, so a project with marks is read again first."""
        owed: list[str] = [] if read is None else read.get(transitions.SETTLE_OWED) or []
        mine = [entry for entry in owed if transitions.owed_of(entry)[0] == scene_index]
        if read is not None and mine:
            settlements, _not_found = owed_settlements(read, mine)  # the sweep logs those
            await self._settle_all(read, settlements)
        return transitions.owing_as_read(write, owed)

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
