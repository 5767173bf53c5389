"""The one clock of every stored timestamp and every age decision: the database's.

Services run on different machines whose clocks drift; the database is the one
place they all talk to. :class:`DbClock` asks the server for its time (``hello``
answers ``localTime``) at start and every minute, and between two readings
advances by the local *monotonic* clock, so a wall-clock jump on this machine
moves nothing. Until the first reading (MongoDB down at start) it is the local
wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from pymongo.errors import PyMongoError

from reelflow_common.logging import get_logger
from reelflow_common.mongo import Database
from reelflow_common.store.timefmt import Clock, as_utc, millis

__all__ = ["REFRESH_S", "Clock", "DbClock", "server_time_of"]

#: how often the server's time is read again
REFRESH_S = 60.0

log = get_logger(__name__)


async def server_time_of(db: Database) -> datetime:
    """The database server's time now (``hello`` answers ``localTime``, MongoDB and SecantusDB)."""
    answer = await db.command("hello")
    server_time = answer.get("localTime")
    if not isinstance(server_time, datetime):
        raise RuntimeError("the database's hello answer has no localTime")
    return as_utc(server_time)


class DbClock:
    """Now, on the database server's clock, at the millisecond precision MongoDB stores."""

    def __init__(self, db: Database, *, refresh_s: float = REFRESH_S) -> None:
        self._db = db
        self._refresh_s = refresh_s
        #: (server time, local monotonic time) of the last reading
        self._anchor: tuple[datetime, float] | None = None

    @property
    def synced(self) -> bool:
        return self._anchor is not None

    def now(self) -> datetime:
        if self._anchor is None:
            return millis(datetime.now(UTC))
        server, at = self._anchor
        return millis(server + timedelta(seconds=time.monotonic() - at))

    async def sync(self) -> None:
        """Read the server's time; the round trip's midpoint stands for the moment it was read."""
        before = time.monotonic()
        server_time = await server_time_of(self._db)
        after = time.monotonic()
        first = self._anchor is None
        self._anchor = (as_utc(server_time), (before + after) / 2)
        if first:
            offset = (as_utc(server_time) - datetime.now(UTC)).total_seconds()
            log.info("db_clock_synced", offset_ms=round(offset * 1000, 1))

    async def run(self, stop: asyncio.Event) -> None:
        """Read the server's time every ``refresh_s`` until ``stop``; a failure keeps the last."""
        while not stop.is_set():
            try:
                await self.sync()
                wait_s = self._refresh_s
            except (PyMongoError, RuntimeError) as exc:
                log.warning("db_clock_not_synced", error=repr(exc))
                wait_s = min(self._refresh_s, 2.0) if self._anchor is None else self._refresh_s
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait_s)
            except TimeoutError:
                continue

    @asynccontextmanager
    async def running(self) -> AsyncIterator[DbClock]:
        """This clock, kept in step in a task of its own until the block ends."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name="db_clock")
        try:
            yield self
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
