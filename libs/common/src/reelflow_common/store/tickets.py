"""Short-lived, single-use WebSocket tickets, so a browser never puts its API key in a URL.

``POST /v1/ws-tickets`` (the API) issues one for the caller's key; the notifier
takes it from ``?ticket=`` and consumes it with one atomic ``find_one_and_delete``,
so a ticket opens at most one socket, even when two notifiers race for it.

The ticket is stored only as its SHA-256 (``_id``), with a TTL index that removes
expired ones; expiry is checked on consumption too, since MongoDB's TTL monitor
runs only once a minute. The expiry is written and checked on the database's clock
(``clock``: ``DbClock.now`` in the services), which the TTL monitor uses too: the api
that issues a ticket and the notifier that consumes it may run on different machines,
whose own clocks may disagree by more than a ticket's lifetime. The document also
carries the API key behind the ticket, encrypted with a key derived from the ticket
itself: the notifier, which holds the ticket, recovers the API key and re-validates it
while the socket stays open (a revoked key closes its sockets), yet whoever reads the
collection learns no key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import ASCENDING

from reelflow_common.mongo import Database
from reelflow_common.store.timefmt import Clock, utcnow

TICKET_PREFIX = "wst_"
#: a ticket's lifetime unless told (the api's ``ws_ticket_ttl_s`` defaults to it)
DEFAULT_TICKET_TTL_S = 60
DEFAULT_TICKET_TTL = timedelta(seconds=DEFAULT_TICKET_TTL_S)

_NONCE_BYTES = 12
#: what :meth:`WsTicketStore.issue` makes: the prefix, then 32 random bytes in URL-safe
#: base64 without padding (43 characters)
_TICKET = re.compile(rf"{TICKET_PREFIX}[A-Za-z0-9_-]{{43}}")


@dataclass(frozen=True)
class IssuedTicket:
    """What the caller hands to its client: the ticket (shown once) and when it expires."""

    ticket: str
    expires_at: datetime


@dataclass(frozen=True)
class Grant:
    """What a consumed ticket stands for: the tenant, and the API key to re-validate."""

    tenant_id: str
    api_key: str


def _ticket_id(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _cipher(ticket: str) -> AESGCM:
    # The ticket carries 256 random bits, so one SHA-256 under its own label is a sound
    # key derivation; the label keeps the encryption key distinct from the stored id.
    return AESGCM(hashlib.sha256(b"reelflow ws ticket key\x00" + ticket.encode()).digest())


class WsTicketStore:
    """The ``ws_tickets`` collection."""

    def __init__(
        self, db: Database, *, ttl: timedelta = DEFAULT_TICKET_TTL, clock: Clock = utcnow
    ) -> None:
        self._tickets = db["ws_tickets"]
        self._ttl = ttl
        self._now = clock

    async def ensure_indexes(self) -> None:
        # expireAfterSeconds=0: each document goes once its own expires_at has passed.
        await self._tickets.create_index(
            [("expires_at", ASCENDING)], name="expiry", expireAfterSeconds=0
        )

    async def issue(self, tenant_id: str, api_key: str) -> IssuedTicket:
        """A new ticket for the holder of ``api_key`` (the caller has authenticated it)."""
        ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
        ticket_id = _ticket_id(ticket)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = _cipher(ticket).encrypt(nonce, api_key.encode(), ticket_id.encode())
        expires_at = self._now() + self._ttl
        await self._tickets.insert_one(
            {
                "_id": ticket_id,
                "tenant_id": tenant_id,
                "key": nonce + sealed,
                "expires_at": expires_at,
            }
        )
        return IssuedTicket(ticket=ticket, expires_at=expires_at)

    async def consume(self, ticket: str) -> Grant | None:
        """What the ticket grants, once; None if unknown, used or expired.

        A string that :meth:`issue` cannot have made (another length or alphabet) is
        refused without a database operation.
        """
        if not _TICKET.fullmatch(ticket):
            return None
        ticket_id = _ticket_id(ticket)
        doc = await self._tickets.find_one_and_delete(
            {"_id": ticket_id, "expires_at": {"$gt": self._now()}}
        )
        if doc is None:
            return None
        blob = bytes(doc["key"])
        try:
            api_key = _cipher(ticket).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], ticket_id.encode()
            )
        except InvalidTag:
            return None  # not written by issue(): treat as unknown
        return Grant(tenant_id=str(doc["tenant_id"]), api_key=api_key.decode())
