"""Tenants and their API keys. A key is stored only as its SHA-256, never in clear."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from reelflow_common.mongo import Database
from reelflow_common.store.errors import KeyOfAnotherTenant
from reelflow_common.store.timefmt import utcnow

DEV_TENANT = "dev"


def hash_key(key: str) -> str:
    """The stored form of a key.

    A plain, unsalted SHA-256 is enough: keys are long random tokens, not
    passwords, and the hash must be looked up directly on every request.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "rf_" + secrets.token_urlsafe(32)


class ApiKeyStore:
    """The ``tenants`` and ``api_keys`` collections."""

    def __init__(self, db: Database) -> None:
        self._tenants = db["tenants"]
        self._keys = db["api_keys"]

    async def ensure_indexes(self) -> None:
        await self._keys.create_index([("tenant_id", ASCENDING)], name="tenant")
        await self._tenants.create_index([("name", ASCENDING)], name="name")

    async def create_tenant(self, name: str) -> str:
        """A new tenant's id."""
        tenant_id = str(uuid.uuid4())
        await self._tenants.insert_one({"_id": tenant_id, "name": name, "created_at": utcnow()})
        return tenant_id

    async def issue_key(self, tenant_id: str, *, key: str | None = None, name: str = "") -> str:
        """Give the tenant a key (a new one unless ``key`` is given) and return it.

        Issuing the same key to the same tenant again changes nothing; a key that
        another tenant holds raises ``KeyOfAnotherTenant``.
        """
        key = key or new_key()
        digest = hash_key(key)
        try:
            await self._keys.insert_one(
                {"_id": digest, "tenant_id": tenant_id, "name": name, "created_at": utcnow()}
            )
        except DuplicateKeyError:
            holder = await self.tenant_for_key(key)
            if holder != tenant_id:
                raise KeyOfAnotherTenant("this API key belongs to another tenant") from None
        return key

    async def tenant_for_key(self, key: str) -> str | None:
        """The tenant a key belongs to, or None for an unknown key."""
        doc = await self._keys.find_one({"_id": hash_key(key)}, {"tenant_id": 1})
        return None if doc is None else str(doc["tenant_id"])

    async def ensure_dev_key(self, key: str | None = None) -> tuple[str, str]:
        """The ``dev`` tenant (created on first use) and a key of it: ``key``, or a new one."""
        doc = await self._tenants.find_one_and_update(
            {"name": DEV_TENANT},
            {"$setOnInsert": {"_id": str(uuid.uuid4()), "created_at": utcnow()}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # an upsert returning the document after always finds one
        tenant_id = str(doc["_id"])
        return tenant_id, await self.issue_key(tenant_id, key=key, name="dev")
