"""Prepare a database before reelflow's services start on it."""

from __future__ import annotations

from reelflow_common.clock import server_time_of
from reelflow_common.polling import CompletionBook, PollStats
from reelflow_common.store import ApiKeyStore, ProjectStore
from reelflow_common.store.migration import migrate_v1_projects
from reelflow_common.store.tickets import WsTicketStore
from reelflow_devtools.connections import mongo


async def prepare_database(mongo_url: str, database: str) -> int:
    """Create every index once, and upgrade old project documents; how many were upgraded.

    Each service ensures the indexes too. Doing it first keeps four processes
    from building them at the moment the first writes create the collections:
    SecantusDB, the embedded development database, can hang on exactly that race
    (an index build meeting an insert that creates the collection).

    Project documents of the first landing (v1) are upgraded in place, so an old
    ``.run/mongo-data`` keeps working; a second run finds none left to upgrade.
    """
    async with mongo(mongo_url) as client:
        db = client[database]
        await ProjectStore(db).ensure_indexes()
        await ApiKeyStore(db).ensure_indexes()
        await WsTicketStore(db).ensure_indexes()
        await PollStats(db, CompletionBook()).ensure_indexes()
        return await migrate_v1_projects(db, now=await server_time_of(db))
