"""Tenants and their API keys. A key is stored only as its SHA-256, never in clear.

A key may carry a label and an expiry, and may be revoked; an expired or revoked
key authenticates as no key at all. Operators name a key by its id, the first
16 hex digits of its hash: enough to tell keys apart, useless to rebuild one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from reelflow_common.accounting.ledger import LedgerStore
from reelflow_common.accounting.limits import TenantLimits
from reelflow_common.errors import ReelflowError
from reelflow_common.mongo import Database
from reelflow_common.settings import AuthSettings
from reelflow_common.store.errors import KeyLookupsBusy, KeyOfAnotherTenant
from reelflow_common.store.timefmt import Clock, as_utc, utcnow

DEV_TENANT = "dev"
KEY_PREFIX = "rf_"
#: characters of a key shown in listings (``rf_`` and four random ones)
SHOWN_PREFIX_CHARS = 7
KEY_ID_LENGTH = 16
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_LENGTH}}}")

V = TypeVar("V")


class UnknownTenant(ReelflowError):
    """No tenant has this id."""


class UnknownApiKey(ReelflowError):
    """No API key has this id."""


def hash_key(key: str) -> str:
    """The stored form of a key.

    A plain, unsalted SHA-256 is enough: keys are long random tokens, not
    passwords, and the hash must be looked up directly on every request.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """The id ``key list`` shows for ``key`` (its hash's start): a key named in a log line
    without the key. Any string has one, a key never issued too."""
    return hash_key(key)[:KEY_ID_LENGTH]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown of a key: never the key itself."""

    key_id: str
    #: the key's first characters, so its holder can tell which one it is
    prefix: str
    tenant_id: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class Grant:
    """A valid key's tenant, and until when the key is valid (None: until revoked)."""

    tenant_id: str
    expires_at: datetime | None
    #: the tenant's limits, copied onto each of its keys so that checking them costs no read
    limits: TenantLimits = field(default_factory=TenantLimits)


class ApiKeyStore:
    """The ``tenants`` and ``api_keys`` collections.

    Every stamp it writes (``created_at``, ``revoked_at``) and every expiry it decides is on
    ``clock``: the database's in the services (``DbClock.now``), so a key issued by one
    machine expires at the same moment on every other.
    """

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._now = clock
        self._tenants = db["tenants"]
        self._keys = db["api_keys"]

    async def ensure_indexes(self) -> None:
        await self._keys.create_index([("tenant_id", ASCENDING)], name="tenant")
        await self._tenants.create_index([("name", ASCENDING)], name="name")

    # --- tenants -----------------------------------------------------------------------

    async def create_tenant(self, name: str) -> str:
        """A new tenant's id."""
        tenant_id = str(uuid.uuid4())
        await self._tenants.insert_one({"_id": tenant_id, "name": name, "created_at": self._now()})
        return tenant_id

    async def tenant(self, tenant_id: str) -> Tenant | None:
        doc = await self._tenants.find_one({"_id": tenant_id})
        return None if doc is None else _tenant(doc)

    async def limits(self, tenant_id: str) -> TenantLimits:
        """The tenant's limits (none set: unlimited); UnknownTenant if there is no such tenant."""
        doc = await self._tenants.find_one({"_id": tenant_id}, {"limits": 1})
        if doc is None:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        return TenantLimits.model_validate(doc.get("limits") or {})

    async def set_limits(self, tenant_id: str, limits: TenantLimits) -> None:
        """Set the tenant's limits, and copy them onto its keys (read with every key lookup).

        Keys first, the tenant last: a key issued meanwhile copies the tenant's
        limits as they are, so it may miss this change only if the tenant write
        fails, and then the command fails and is run again.
        """
        if await self.tenant(tenant_id) is None:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        values = limits.model_dump()
        await LedgerStore(self._db).set_limits(tenant_id, limits)
        await self._keys.update_many({"tenant_id": tenant_id}, {"$set": {"limits": values}})
        await self._tenants.update_one({"_id": tenant_id}, {"$set": {"limits": values}})
        # A key issued between the two writes copied the old limits: copy again.
        await self._keys.update_many({"tenant_id": tenant_id}, {"$set": {"limits": values}})

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, oldest first."""
        docs = await self._tenants.find({}).sort([("created_at", ASCENDING)]).to_list(None)
        return [_tenant(doc) for doc in docs]

    # --- keys --------------------------------------------------------------------------

    async def issue_key(
        self,
        tenant_id: str,
        *,
        key: str | None = None,
        label: str = "",
        expires_at: datetime | None = None,
    ) -> str:
        """Give the tenant a key (a new one unless ``key`` is given) and return it.

        Issuing the same key to the same tenant again changes nothing; a key that
        another tenant holds raises ``KeyOfAnotherTenant``.
        """
        key = key or new_key()
        digest = hash_key(key)
        tenant = await self._tenants.find_one({"_id": tenant_id}, {"limits": 1})
        try:
            await self._keys.insert_one(
                {
                    "_id": digest,
                    "tenant_id": tenant_id,
                    "label": label,
                    "prefix": key[:SHOWN_PREFIX_CHARS],
                    "created_at": self._now(),
                    "expires_at": expires_at,
                    "revoked_at": None,
                    "limits": (tenant or {}).get("limits") or {},
                }
            )
        except DuplicateKeyError:
            holder = await self._keys.find_one({"_id": digest}, {"tenant_id": 1})
            if holder is None or holder["tenant_id"] != tenant_id:
                raise KeyOfAnotherTenant("this API key belongs to another tenant") from None
        return key

    async def create_key(
        self, tenant_id: str, *, label: str = "", expires_at: datetime | None = None
    ) -> tuple[str, ApiKeyInfo]:
        """A new key of an existing tenant, and what may be shown of it later."""
        if await self.tenant(tenant_id) is None:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        key = await self.issue_key(tenant_id, label=label, expires_at=expires_at)
        info = await self._key_info(hash_key(key))
        assert info is not None  # just inserted
        return key, info

    async def list_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        """The tenant's keys, revoked and expired ones included, oldest first."""
        docs = await self._keys.find({"tenant_id": tenant_id}).to_list(None)
        return sorted((_key_info(doc) for doc in docs), key=lambda info: info.created_at)

    async def revoke_key(self, key_id: str) -> ApiKeyInfo:
        """Revoke the key ``key_id`` names (again: nothing changes); the key as it now is."""
        digest = await self._digest_of(key_id)
        await self._keys.update_one(
            {"_id": digest, "revoked_at": None}, {"$set": {"revoked_at": self._now()}}
        )
        info = await self._key_info(digest)
        assert info is not None  # keys are never deleted
        return info

    async def grant_for_key(self, key: str) -> Grant | None:
        """The tenant of a valid key; None for an unknown, expired or revoked one."""
        doc = await self._keys.find_one({"_id": hash_key(key)})
        if doc is None:
            return None
        info = _key_info(doc)
        if not info.valid_at(self._now()):
            return None
        limits = TenantLimits.model_validate(doc.get("limits") or {})
        return Grant(info.tenant_id, info.expires_at, limits)

    async def cached_grant(self, key: str) -> Grant | None:
        """:meth:`grant_for_key`; the cached store answers from memory."""
        return await self.grant_for_key(key)

    async def tenant_for_key(self, key: str) -> str | None:
        """The tenant a key belongs to, or None for an unknown, expired or revoked key."""
        grant = await self.grant_for_key(key)
        return None if grant is None else grant.tenant_id

    async def ensure_dev_key(self, key: str | None = None) -> tuple[str, str]:
        """The ``dev`` tenant (created on first use) and a key of it: ``key``, or a new one."""
        doc = await self._tenants.find_one_and_update(
            {"name": DEV_TENANT},
            {"$setOnInsert": {"_id": str(uuid.uuid4()), "created_at": self._now()}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # an upsert returning the document after always finds one
        tenant_id = str(doc["_id"])
        return tenant_id, await self.issue_key(tenant_id, key=key, label="dev")

    async def _digest_of(self, key_id: str) -> str:
        """The stored hash a key id begins, found by a range on ``_id`` (its index)."""
        if not _KEY_ID.fullmatch(key_id):
            raise UnknownApiKey(f"{key_id!r} is not a key id ({KEY_ID_LENGTH} hex digits)")
        # Hex digits sort below "g": every hash that starts with key_id lies in this range.
        docs = await self._keys.find(
            {"_id": {"$gte": key_id, "$lt": key_id + "g"}}, {"_id": 1}
        ).to_list(2)
        if len(docs) != 1:
            raise UnknownApiKey(f"no API key {key_id!r}")
        return str(docs[0]["_id"])

    async def _key_info(self, digest: str) -> ApiKeyInfo | None:
        doc = await self._keys.find_one({"_id": digest})
        return None if doc is None else _key_info(doc)


class CachedApiKeyStore(ApiKeyStore):
    """An ``ApiKeyStore`` that remembers each key's tenant for ``ttl_s`` seconds.

    So an authenticated request costs no database read most of the time. The
    price: a key revoked (or another change made) elsewhere still works here for
    up to ``ttl_s``; an expiry is honoured to the second. Valid keys are kept in
    one table of ``max_entries``, unknown ones (and revoked, expired) in another
    of ``max_unknown``, each least recently used first out: a flood of wrong keys
    cannot grow the memory, nor push a valid key out and make its next request
    read again. A key is read by one lookup at a time: the callers of a key
    that is being looked up share that lookup's answer (one read however many
    requests or sockets of a new key arrive together), and one who gives up
    leaves it running for the others. At most ``lookups_at_once`` keys not
    known to be valid are looked up at a time, so that flood costs the database
    a bounded number of reads at once; a caller of one more such key gets
    :class:`KeyLookupsBusy` at once rather than waiting its turn: a waiting
    caller held what it held (an api request slot, a notifier handshake), and
    the queue had no end. A caller of a key being looked up joins that lookup
    and is never refused. A valid key this process remembers, read again after
    its ``ttl_s``, is never refused nor counted; one it does not (a new process,
    a key never used here, or one pushed out of ``max_entries``) is looked up as
    any unknown key, and may be refused too while a flood of wrong keys keeps
    those lookups busy.
    """

    def __init__(
        self,
        db: Database,
        *,
        ttl_s: float,
        max_entries: int,
        max_unknown: int = 1_000,
        lookups_at_once: int = 8,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(db, clock=clock)
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._max_unknown = max_unknown
        self._lookups_at_once = lookups_at_once
        #: what the cache's ``ttl_s`` is counted on (a key's expiry is on ``clock``)
        self._monotonic = monotonic
        #: a valid key's grant, and until when it is trusted
        self._known: OrderedDict[str, tuple[Grant, float]] = OrderedDict()
        #: until when a key is taken to be unknown
        self._unknown: OrderedDict[str, float] = OrderedDict()
        #: the lookup in progress of each key being looked up, which its callers share
        self._lookups: dict[str, asyncio.Task[Grant | None]] = {}
        #: the keys among them not known to be valid: at most ``lookups_at_once``
        self._unknown_lookups: set[str] = set()

    @classmethod
    def from_settings(
        cls, db: Database, settings: AuthSettings, *, clock: Clock = utcnow
    ) -> CachedApiKeyStore:
        """The cache ``settings`` describe (the api's and the notifier's alike), its keys'
        expiries on ``clock`` (``DbClock.now`` in the services)."""
        return cls(
            db,
            ttl_s=settings.auth_cache_ttl_s,
            max_entries=settings.auth_cache_size,
            max_unknown=settings.auth_cache_unknown_size,
            lookups_at_once=settings.auth_key_lookups_at_once,
            clock=clock,
        )

    async def cached_grant(self, key: str) -> Grant | None:
        """The key's grant (tenant and limits), from memory when read less than ``ttl_s`` ago.

        :class:`KeyLookupsBusy` for a key not known to be valid, and not being looked
        up, while ``lookups_at_once`` such keys are being looked up.
        """
        if self._ttl_s <= 0:
            return await self.grant_for_key(key)
        digest = hash_key(key)
        now = self._monotonic()
        known = self._known.get(digest)
        if known is not None and now < known[1]:
            self._known.move_to_end(digest)
            return known[0]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and now < unknown_until:
            self._unknown.move_to_end(digest)
            return None
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._look_up(key, digest, now, known=known is not None)
        # Shielded: a caller cancelled (its client gone) leaves the lookup to the others.
        return await asyncio.shield(lookup)

    def _look_up(
        self, key: str, digest: str, now: float, *, known: bool
    ) -> asyncio.Task[Grant | None]:
        """Start the one lookup of ``key`` that its callers meanwhile share."""
        if not known and len(self._unknown_lookups) >= self._lookups_at_once:
            raise KeyLookupsBusy(
                f"{self._lookups_at_once} keys not known to be valid are being looked up"
            )
        lookup = asyncio.create_task(self._read(key, digest, now), name="api_key_lookup")
        self._lookups[digest] = lookup
        if not known:
            self._unknown_lookups.add(digest)
        # A lookup cancelled before it began never runs its own ``finally``.
        lookup.add_done_callback(functools.partial(self._looked_up, digest))
        return lookup

    async def _read(self, key: str, digest: str, now: float) -> Grant | None:
        lookup = asyncio.current_task()
        try:
            grant = await self.grant_for_key(key)
        finally:
            # Done here rather than in the done callback, which runs a moment later: a
            # caller in between would share a lookup that had already failed.
            self._forget_lookup(digest, lookup)
        self._remember(digest, grant, now)
        return grant

    def _looked_up(self, digest: str, lookup: asyncio.Task[Grant | None]) -> None:
        self._forget_lookup(digest, lookup)
        if not lookup.cancelled():
            lookup.exception()  # its callers got it; if all had left, it is not worth a log line

    def _forget_lookup(self, digest: str, lookup: asyncio.Task[Any] | None) -> None:
        if lookup is not None and self._lookups.get(digest) is lookup:
            del self._lookups[digest]
            self._unknown_lookups.discard(digest)

    def _remember(self, digest: str, grant: Grant | None, now: float) -> None:
        if grant is None:
            self._known.pop(digest, None)
            _put(self._unknown, digest, now + self._ttl_s, self._max_unknown)
            return
        self._unknown.pop(digest, None)
        until = now + self._ttl_s
        if grant.expires_at is not None:
            until = min(until, now + (grant.expires_at - self._now()).total_seconds())
        _put(self._known, digest, (grant, until), self._max_entries)

    async def tenant_for_key(self, key: str) -> str | None:
        grant = await self.cached_grant(key)
        return None if grant is None else grant.tenant_id


def _put(table: OrderedDict[str, V], digest: str, value: V, max_entries: int) -> None:
    """Remember ``value`` as the most recently used, forgetting the least recently used past
    ``max_entries``."""
    table[digest] = value
    table.move_to_end(digest)
    while len(table) > max_entries:
        table.popitem(last=False)


def _tenant(doc: dict[str, Any]) -> Tenant:
    return Tenant(str(doc["_id"]), str(doc.get("name", "")), as_utc(doc["created_at"]))


def _key_info(doc: dict[str, Any]) -> ApiKeyInfo:
    expires_at, revoked_at = doc.get("expires_at"), doc.get("revoked_at")
    return ApiKeyInfo(
        key_id=str(doc["_id"])[:KEY_ID_LENGTH],
        prefix=str(doc.get("prefix", "")),
        tenant_id=str(doc["tenant_id"]),
        # Keys issued before labels existed kept theirs under "name".
        label=str(doc.get("label", doc.get("name", ""))),
        created_at=as_utc(doc["created_at"]),
        expires_at=None if expires_at is None else as_utc(expires_at),
        revoked_at=None if revoked_at is None else as_utc(revoked_at),
    )
