"""MongoDB access through PyMongo's async API (``AsyncMongoClient``; Motor is deprecated)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from reelflow_common.settings import MongoSettings

Document = dict[str, Any]
Database = AsyncDatabase[Document]


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
        await client.close()


async def ping(db: Database) -> bool:
    """True when MongoDB answers."""
    try:
        await db.command("ping")
    except Exception:
        return False
    return True
