"""The ``projects`` collection as every part of the store holds it.

Its handles (majority write concern; majority read concern for the reads a repair is
built from, so "already terminal" is never a write a failover rolls back), the store's
clock and settings, the state of its batched writes, all made in one place; and the
two reads the parts share: a clip read again to build a guarded write from, and the
projects a sweep finds due.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from pymongo import WriteConcern
from pymongo.read_concern import ReadConcern

from reelflow_common.accounting.ledger import LedgerStore
from reelflow_common.batching import Batcher
from reelflow_common.messages import Event
from reelflow_common.mongo import Database, Document, drop_retired_indexes
from reelflow_common.store.documents import (
    PROJECT_INDEXES,
    RETIRED_PROJECT_INDEXES,
    clip_from_document,
    clip_path,
)
from reelflow_common.store.inserts import MAX_INSERTS, insert_batch
from reelflow_common.store.models import ClipState
from reelflow_common.store.timefmt import Clock, as_utc, utcnow
from reelflow_common.store.transitions.write import Write

if TYPE_CHECKING:
    from reelflow_common.storage.links import VideoLinks


class ProjectCollection:
    """The ``projects`` collection, and the state every part of the store shares."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        lease_s: float = 600.0,
        event_log_size: int = 64,
        links: VideoLinks | None = None,
    ) -> None:
        self._projects = db.get_collection("projects", write_concern=WriteConcern(w="majority"))
        self.ledgers = LedgerStore(db)
        self._majority_reads = self._projects.with_options(read_concern=ReadConcern("majority"))
        self._now = clock
        self._lease = timedelta(seconds=lease_s)
        self._log_size = event_log_size
        #: signs reelflow's copies of the videos a ``clip.updated`` shows, as a read does: the
        #: store of a service whose changes move a task's video (the api's retry, the
        #: poller's late results); None: no copies are kept (or none of its changes show one)
        self._links = links
        #: the changes of each project's clips waiting to be written together
        self._together: dict[str, Batcher[Write, list[Event] | None]] = {}
        #: new projects waiting to be inserted together
        self._inserts: Batcher[Document, None] = Batcher(
            partial(insert_batch, self._projects), max_batch=MAX_INSERTS
        )

    @property
    def lease_s(self) -> float:
        return self._lease.total_seconds()

    def now(self) -> datetime:
        """The store's clock (the database's, in the services)."""
        return self._now()

    async def ensure_indexes(self) -> None:
        """Create the indexes the store's queries rely on, then drop those an earlier
        release made that none does (first made, then dropped: a sweep always has its
        index); safe to call at every start, on several replicas at once."""
        await self._projects.create_indexes(PROJECT_INDEXES)
        await drop_retired_indexes(self._projects, RETIRED_PROJECT_INDEXES)

    async def _read_clip(
        self, project_id: str, scene_index: int, *, tenant_id: str | None = None
    ) -> ClipState | None:
        """One clip as it is now (majority read), to build a guarded write from again."""
        query: Document = {"_id": project_id}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        doc = await self._majority_reads.find_one(
            query, {"created_at": 1, clip_path(scene_index): 1}
        )
        raw_clip = None if doc is None else doc.get("clips", {}).get(str(scene_index))
        if doc is None or raw_clip is None:
            return None
        return clip_from_document(raw_clip, scene_index, created_at=as_utc(doc["created_at"]))

    async def _due_by(
        self, mark: str, *, before: datetime, limit: int
    ) -> list[tuple[str, datetime]]:
        """(id, mark) of the projects whose ``mark`` is before ``before``, earliest first."""
        found = self._projects.find({mark: {"$lt": before}}, {mark: 1})
        docs = await found.sort(mark, 1).limit(limit).to_list()
        return [(doc["_id"], doc[mark]) for doc in docs]
