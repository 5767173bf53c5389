"""Prepare a database before reelflow's services start on it."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from reelflow_common.store import ApiKeyStore, ProjectStore
from reelflow_common.store.tickets import WsTicketStore


async def prepare_database(mongo_url: str, database: str) -> None:
    """Create every index once, before the services start.

    Each service ensures the indexes too. Doing it first keeps four processes
    from building them at the moment the first writes create the collections:
    SecantusDB, the embedded development database, can hang on exactly that race
    (an index build meeting an insert that creates the collection).
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, timeoutMS=30_000)
    try:
        db = client[database]
        await ProjectStore(db).ensure_indexes()
        await ApiKeyStore(db).ensure_indexes()
        await WsTicketStore(db).ensure_indexes()
    finally:
        await client.close()
