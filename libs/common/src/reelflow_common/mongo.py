"""MongoDB access through PyMongo's async API (``AsyncMongoClient``; Motor is deprecated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from reelflow_common.lifecycle import Stopped, in_background, wait_for
from reelflow_common.logging import get_logger
from reelflow_common.mongo_connect import install as _close_sockets_on_cancel
from reelflow_common.settings import MongoSettings
from reelflow_common.transient import is_transient

Document = dict[str, Any]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]

log = get_logger(__name__)

_close_sockets_on_cancel()  # PyMongo leaves a socket open when a connect is cancelled

#: how long closing a client may try to end its sessions on the server
CLOSE_TIMEOUT_S = 1.0
#: MongoDB's codes for a drop of what is not there: the index, or its collection
_INDEX_NOT_FOUND = 27
_NAMESPACE_NOT_FOUND = 26
#: tries of a write built from a read and guarded on it (a repair, a follow, a cancel, a
#: reservation, a create's insert), which a concurrent writer may overtake: each miss reads
#: again, and this many misses in a row is contention the caller says (or waits out)
REREAD_ATTEMPTS = 3


@asynccontextmanager
async def mongo_database(settings: MongoSettings) -> AsyncIterator[Database]:
    """The configured database; the client is closed on exit.

    The client connects lazily and reconnects by itself, so a MongoDB outage
    surfaces as errors on individual operations, never as a dead process.
    """
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongo_url.get_secret_value(),
        uuidRepresentation="standard",
        tz_aware=True,
        timeoutMS=int(settings.mongo_timeout_s * 1000),
        appname="reelflow",
    )
    try:
        yield client[settings.mongo_database]
    finally:
        await close_client(client)


async def close_client(client: AsyncMongoClient[Document]) -> None:
    """Close ``client`` without waiting long for a server that is gone.

    ``close()`` first sends ``endSessions``, a courtesy (the server expires idle
    sessions by itself), and selects a server for it with the 30 s default
    ``serverSelectionTimeoutMS``, which the client's ``timeoutMS`` does not
    cover. A process stopping while MongoDB is down would wait all of that; a
    ``pymongo.timeout`` block bounds the selection.
    """
    with pymongo.timeout(CLOSE_TIMEOUT_S):
        await client.close()


async def ping(db: Database) -> bool:
    """True when MongoDB answers."""
    try:
        await db.command("ping")
    except Exception:
        return False
    return True


async def drop_retired_indexes(collection: Collection, names: Sequence[str]) -> None:
    """Drop the indexes named ``names`` that an earlier release made, if they are there.

    Safe at every start and on several replicas at once: an index already gone (another
    replica dropped it, or it never existed) is skipped. An outage is raised, for
    ``Indexes`` to wait out; any other refusal (a user without ``dropIndex``, an index
    build running on the collection) is logged and the start goes on: a retired index
    costs writes, never a wrong answer, and the next start tries again.
    """
    for name in names:
        try:
            await collection.drop_index(name)
        except OperationFailure as exc:
            if exc.code in (_INDEX_NOT_FOUND, _NAMESPACE_NOT_FOUND):
                continue
            if is_transient(exc):
                raise
            log.warning(
                "retired_index_not_dropped",
                collection=collection.name,
                index=name,
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            log.info("retired_index_dropped", collection=collection.name, index=name)


class Indexes:
    """Every ``ensure_indexes`` step of a service, run until all of them succeed once.

    In the background, so a service starts while MongoDB is down: it answers
    ``/healthz``, reports ``mongodb`` unready on ``/readyz`` (Kubernetes keeps
    traffic away without restarting it), and becomes ready by itself once
    MongoDB answers and the indexes exist. Nothing may write before that: the
    unique indexes are what make idempotency keys and task UUIDs safe.
    """

    def __init__(self, db: Database, steps: Sequence[Callable[[], Awaitable[None]]]) -> None:
        self._db = db
        self._steps = steps
        self._build: asyncio.Task[None] | None = None
        self.ensured = asyncio.Event()

    async def ensure(self) -> None:
        """Run every step, waiting out MongoDB outages (see ``lifecycle.wait_for``)."""
        await wait_for("mongodb", self._run_steps)
        self.ensured.set()
        log.info("indexes_ensured")

    async def ready(self) -> bool:
        """The readiness check: indexes ensured, and MongoDB answering now."""
        return self.ensured.is_set() and await ping(self._db)

    async def wait(self, *, stop: asyncio.Event) -> None:
        """Until the indexes exist (see :meth:`in_background`).

        Raises :class:`~reelflow_common.lifecycle.Stopped` when ``stop`` comes
        first, and the build's own error when it failed with something other
        than an outage (a bad setting or a bug, which waiting cannot mend).
        """
        if self._build is None:
            raise RuntimeError("the index build has not been started (in_background)")
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({self._build, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not self._build.done():
            raise Stopped("mongodb")
        self._build.result()

    @asynccontextmanager
    async def in_background(self) -> AsyncIterator[Indexes]:
        """Ensure the indexes in a task of their own, cancelled on exit if still waiting."""
        async with in_background(self.ensure(), name="ensure_indexes") as build:
            self._build = build
            yield self

    async def _run_steps(self) -> None:
        for step in self._steps:
            await step()
