"""Applying the store's guarded writes (built by :mod:`transitions`, pure).

One write alone, or the changes of one project's clips that come while one is being
written merged into one update (:mod:`together`); the settlement a write carries, made
on the tenant's ledger and then recorded on the project; the events it pushed, numbered
from what its own update returned (:mod:`eventlog`); and the finish of a project whose
last open clip it ended. State changes are written with majority write concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from bson.errors import InvalidDocument
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure, WriteConcernError

from reelflow_common.accounting.ledger import Charge, Settlement
from reelflow_common.batching import Batcher
from reelflow_common.domain import Counts, ProjectStatus
from reelflow_common.logging import get_logger
from reelflow_common.messages import Event
from reelflow_common.mongo import Document
from reelflow_common.store import together
from reelflow_common.store.collection import ProjectCollection
from reelflow_common.store.documents import LOG_HEAD, log_head
from reelflow_common.store.ends import count_ends
from reelflow_common.store.eventlog import StoredEvent, materialize
from reelflow_common.store.models import ClipState
from reelflow_common.store.owed import unrecorded
from reelflow_common.store.transitions import clipmoves, owing
from reelflow_common.store.transitions.write import Write
from reelflow_common.transient import is_transient

log = get_logger(__name__)

#: changes of one project's clips written as one update, at most
_MAX_TOGETHER = 64

#: what a write written together came to: its events, None (its guard did not hold), or the
#: error that is its alone
_Applied = list[Event] | BaseException | None


class ProjectWrites(ProjectCollection):
    """Applies guarded writes of the ``projects`` collection, with what each one causes."""

    async def _apply(
        self, write: Write, project_id: str, *, finish: bool = True
    ) -> list[Event] | None:
        """Apply one write; its events and those of the finish it caused, or None if not applied.

        A change of one clip goes together with those of the project's other clips that
        come while one is being written (:mod:`together`): one update for all of them.
        The writes of a project run in a task started in the context (log fields) of the
        call that found none running; nothing in them logs but a refused merged update,
        which names the project.
        ``finish`` False: the caller finishes once after all its writes (a retry).
        """
        if not finish or together.clip_of(write) is None:
            return await self._apply_alone(write, project_id, finish=finish)
        queue = self._together.get(project_id)
        if queue is None:
            queue = Batcher(
                partial(self._apply_together, project_id),
                max_batch=_MAX_TOGETHER,
                on_idle=partial(self._drop_queue, project_id),
            )
            self._together[project_id] = queue
        return await queue.submit(write)

    def _drop_queue(self, project_id: str) -> None:
        """Nothing of the project waits to be written: let its queue go."""
        self._together.pop(project_id, None)

    async def _apply_together(self, project_id: str, writes: Sequence[Write]) -> list[_Applied]:
        """Apply ``writes`` (each a change of one clip of the project): the first change of
        each clip together in one update, and each alone that cannot go with them (a second
        change of a clip), or all alone if one of their guards no longer holds."""
        first: dict[str | None, int] = {}
        for index, write in enumerate(writes):
            first.setdefault(together.clip_of(write), index)
        group = list(first.values())
        outcomes: dict[int, _Applied] = {}
        if len(group) > 1:
            applied = await self._apply_merged([writes[index] for index in group], project_id)
            if applied is not None:
                outcomes.update(zip(group, applied, strict=True))
        for index, write in enumerate(writes):
            if index not in outcomes:
                try:
                    outcomes[index] = await self._apply_alone(write, project_id)
                except Exception as exc:  # that write's own (the Batcher hands it to its caller)
                    outcomes[index] = exc
        return [outcomes[index] for index in range(len(writes))]

    async def _apply_merged(
        self, writes: Sequence[Write], project_id: str
    ) -> list[_Applied] | None:
        """Each write's events once the merged update applied (a finish's with the last write
        that moved counts), or None if it did not, or the database refused it before writing
        anything (alone, each write then meets what is its own). Any other error fails them
        all, as it would fail a write alone: each message is tried again."""
        merged = together.merged(writes)
        if merged is None:
            return None
        projection = LOG_HEAD | {write.settle[0]: 1 for write in writes if write.settle is not None}
        try:
            head = await self._projects.find_one_and_update(
                merged.filter,
                merged.update,
                projection=projection,
                return_document=ReturnDocument.AFTER,
            )
        except (OperationFailure, InvalidDocument) as exc:
            # The server answered that it did not run it (or it could not be sent); not a
            # write concern it may have written before failing, nor an outage.
            if isinstance(exc, WriteConcernError) or is_transient(exc):
                raise
            log.warning("store_merged_write_refused", project_id=project_id, error=str(exc))
            return None
        if head is None:
            return None
        events = self._events_of(merged, project_id, head)
        failed: dict[int, BaseException] = {}
        settled: dict[int, str] = {}
        for index, write in enumerate(writes):
            try:
                if write.settle is not None and (key := await self._settle(head, *write.settle)):
                    settled[index] = key
            except Exception as exc:  # its redelivery settles it in the repair path
                failed[index] = exc
        try:
            await self._record_settled(project_id, list(settled.values()))
        except Exception as exc:  # their redeliveries record them in the repair path
            failed |= dict.fromkeys(settled, exc)
        outcomes: list[_Applied] = []
        finisher: tuple[int, list[Event]] | None = None
        for index, write in enumerate(writes):
            own, events = events[: write.events], events[write.events :]
            if index in failed:
                outcomes.append(failed[index])
                continue
            outcomes.append(own)
            if _moves_counts(write):
                finisher = index, own
        if finisher is not None:
            index, own = finisher
            try:
                outcomes[index] = own + await self._finish_if_done(project_id, head)
            except Exception as exc:  # the finisher's redelivery finishes in the repair path
                outcomes[index] = exc
        return outcomes

    async def _apply_alone(
        self, write: Write, project_id: str, *, finish: bool = True
    ) -> list[Event] | None:
        projection = LOG_HEAD
        if write.settle is not None:
            projection = LOG_HEAD | {write.settle[0]: 1}
        head = await self._projects.find_one_and_update(
            write.filter, write.update, projection=projection, return_document=ReturnDocument.AFTER
        )
        if head is None:
            return None
        if write.settle is not None and (key := await self._settle(head, *write.settle)):
            await self._record_settled(project_id, [key])
        events = self._events_of(write, project_id, head)
        if not finish or not _moves_counts(write):
            # A copy landing or an attempt's end: no clip changed bucket, so this
            # writer did not make pending reach 0; the one that did finishes.
            return events
        return events + await self._finish_if_done(project_id, head)

    async def _settle(self, head: Document, charge_path: str, settlement: Settlement) -> str | None:
        """Settle the reservation at ``charge_path`` on the tenant's ledger, if there is one:
        the settlement's key, for the project to record (:meth:`_record_settled`).

        A crash before this leaves the message unacknowledged; its redelivery finds the
        change made and settles in the repair path.
        """
        charge: Any = head
        for name in charge_path.split("."):
            charge = charge.get(name) if isinstance(charge, dict) else None
        if charge is None:
            return None  # a tenant without a ledger: nothing to settle or record
        reserved = Charge.model_validate(charge)
        await self.ledgers.settle(head["tenant_id"], reserved, settlement)
        return settlement.key_on(reserved)

    async def _record_settled(self, project_id: str, keys: Sequence[str]) -> None:
        """Record on the project the settlements the ledger applied (one update; none for no
        key): the repair path settles none of them again, however late a duplicate comes.

        After the ledger's ``$inc``, never before: a crash in between leaves the message
        unacknowledged, and its redelivery finds the key in the ledger's list of recent ones
        (a no-op) and records it then.
        """
        if keys:
            write = owing.settled(project_id, keys)
            await self._projects.update_one(write.filter, write.update)

    async def _settle_all(
        self, doc: Document, owed: Sequence[tuple[Charge, Settlement]]
    ) -> list[str]:
        """Settle each of ``owed`` on the ledger of the project ``doc`` (a no-op where the
        ledger's list shows it made), then record them all on the project (one update; none
        for nothing): the keys the ledger applied now."""
        applied: list[str] = []
        for charge, settlement in owed:
            if await self.ledgers.settle(doc["tenant_id"], charge, settlement):
                applied.append(settlement.key_on(charge))
        await self._record_settled(doc["_id"], [s.key_on(charge) for charge, s in owed])
        return applied

    async def _settle_unrecorded(self, doc: Document, clip: ClipState, task_uuid: str) -> None:
        """Settle what the recorded ends of ``task_uuid`` settle and the project (``doc``, read
        with its ``settled``) does not record as settled, then record it."""
        await self._settle_all(doc, unrecorded(doc, clip, task_uuid))

    def _events_of(self, write: Write, project_id: str, head: Document) -> list[Event]:
        if not write.events:
            return []
        pushed: list[StoredEvent] = write.update["$push"]["events"]["$each"]
        count_ends(pushed)  # the update applied: the clips it ended, counted once
        # The update is atomic, so the seq and counts it returned are exactly those
        # right after its own events.
        return materialize(log_head(project_id, head), pushed)

    async def _finish_if_done(self, project_id: str, head: Document) -> list[Event]:
        """The finisher: only a writer that saw no clip pending tries; one of them wins."""
        counts = Counts.model_validate(head["counts"])
        if counts.pending or ProjectStatus(head["status"]) is not ProjectStatus.GENERATING:
            return []
        write = clipmoves.finish(
            project_id,
            counts,
            now=self._now(),
            correlation_id=head.get("correlation_id"),
            log_size=self._log_size,
        )
        finished = await self._projects.find_one_and_update(
            write.filter, write.update, projection=LOG_HEAD, return_document=ReturnDocument.AFTER
        )
        # None: another writer finished it, or the counts moved and their writer will.
        return [] if finished is None else self._events_of(write, project_id, finished)

    def _owing(self, write: Write, read: ClipState | None) -> Write:
        """``write``, its settlement marked owed when no message stands behind its writer, who
        built it from the clip ``read`` (None: a message stands behind it)."""
        return write if read is None else owing.owed(write, read, now=self._now())


def _moves_counts(write: Write) -> bool:
    return any(name.startswith("counts.") for name in write.update.get("$inc", {}))
