"""MongoDB access through PyMongo's async API (``AsyncMongoClient``; Motor is deprecated)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from reelflow_common.settings import MongoSettings

Document = dict[str, Any]
Database = AsyncDatabase[Document]

#: how long closing a client may try to end its sessions on the server
CLOSE_TIMEOUT_S = 1.0


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
