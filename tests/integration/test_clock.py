"""The database's clock: read from the server, carried on by the local monotonic clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from reelflow_common.clock import DbClock, server_time_of
from reelflow_common.mongo import Database
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def test_the_clock_follows_the_servers_time(mongo_db: Database) -> None:
    clock = DbClock(mongo_db)
    assert not clock.synced

    async with clock.running():
        await eventually(lambda: clock.synced, "the clock synced")
        first = clock.now()
        await asyncio.sleep(0.05)
        second = clock.now()
        server = await server_time_of(mongo_db)

    assert second > first
    assert abs(server - second) < timedelta(seconds=1)
    assert abs(datetime.now(UTC) - second) < timedelta(seconds=5)  # one machine here
    assert second.microsecond % 1000 == 0  # what MongoDB stores
