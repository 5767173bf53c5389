"""Closing a MongoDB client does not wait for a server that is gone."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
from pydantic import SecretStr

from reelflow_common.mongo import CLOSE_TIMEOUT_S, mongo_database
from reelflow_common.settings import MongoSettings
from reelflow_devtools.embedded_mongo import embedded_mongo
from tests.waiting import eventually

pytestmark = pytest.mark.integration


# The client's monitor is cancelled at close while it reconnects to the dead server;
# PyMongo left that socket for the garbage collector (reelflow_common.mongo_connect).
# Collected inside the test, so a socket left open fails this test, not a later one.
async def test_a_service_closes_its_database_quickly_after_mongodb_went_away(
    tmp_path: Path,
) -> None:
    await _close_after_the_server_stopped(tmp_path)
    gc.collect()


async def _close_after_the_server_stopped(tmp_path: Path) -> None:
    # A server of its own, stopped before the client closes: Ctrl-C once stopped
    # make run's database first, and each service then waited 30 s to end its sessions.
    with embedded_mongo(tmp_path / "data") as url:
        database = mongo_database(MongoSettings(mongo_url=SecretStr(url), mongo_database="close"))
        db = await database.__aenter__()
        await db["things"].create_index("name")
        await db["things"].insert_one({"name": "a"})  # leaves a session to end at close
    await eventually(
        lambda: not db.client.topology_description.has_readable_server(),
        "the client to see that the server is gone",
    )

    async with asyncio.timeout(CLOSE_TIMEOUT_S + 5):
        await database.__aexit__(None, None, None)
