"""Open sockets of a key that stopped being valid (revoked, expired) close with 4401.

A key is checked when its socket opens; this re-checks every distinct key of the
open sockets each ``ws_key_check_interval_s``, one lookup per key however many
sockets share it, and ends the sockets of a key that no longer names their tenant.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol

from reelflow_common.logging import get_logger
from reelflow_common.store import ApiKeyStore, KeyLookupsBusy
from reelflow_notifier.auth import Credential

CLOSE_UNAUTHORIZED = 4401

log = get_logger(__name__)


class Endable(Protocol):
    def end(self, code: int, reason: str) -> None:
        """Close the connection soon with this code (no I/O here)."""


class KeyWatch:
    """``api_key -> tenant -> sockets``; one per replica.

    Grouped by the tenant each socket was opened for, so a check costs one
    comparison per key and tenant, not one per socket (a replica holds
    thousands of sockets of one key).
    """

    def __init__(self, api_keys: ApiKeyStore, *, interval_s: float) -> None:
        self._api_keys = api_keys
        self._interval_s = interval_s
        self._sockets: defaultdict[str, defaultdict[str, set[Endable]]] = defaultdict(
            lambda: defaultdict(set)
        )

    @contextmanager
    def watching(self, credential: Credential, socket: Endable) -> Iterator[None]:
        """Re-validate ``credential`` while the block runs; end ``socket`` if it goes bad."""
        key, tenant_id = credential.api_key, credential.tenant_id
        self._sockets[key][tenant_id].add(socket)
        try:
            yield
        finally:
            tenants = self._sockets.get(key)
            sockets = None if tenants is None else tenants.get(tenant_id)
            if tenants is not None and sockets is not None:
                sockets.discard(socket)
                if not sockets:
                    del tenants[tenant_id]
                if not tenants:
                    del self._sockets[key]

    async def check_all(self) -> int:
        """Check every watched key once; how many sockets were ended."""
        ended = 0
        for key in list(self._sockets):
            try:
                tenant_id = await self._api_keys.tenant_for_key(key)
            except KeyLookupsBusy:
                # Pushed out of the cache, and wrong keys are being looked up meanwhile:
                # this key is checked at the next pass, the others now.
                continue
            except Exception as exc:
                # MongoDB unreachable: keep the sockets rather than drop every client.
                log.warning("ws_key_check_failed", error=repr(exc))
                return ended
            for socket_tenant, sockets in list(self._sockets.get(key, {}).items()):
                if tenant_id != socket_tenant:
                    for socket in list(sockets):
                        socket.end(CLOSE_UNAUTHORIZED, "API key revoked or expired")
                        ended += 1
        if ended:
            log.info("ws_key_revoked", sockets=ended)
        return ended

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_all()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[KeyWatch]:
        """Check in a task of its own until exit."""
        task = asyncio.create_task(self.run(), name="ws_key_watch")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def watched_keys(self) -> int:
        return len(self._sockets)
