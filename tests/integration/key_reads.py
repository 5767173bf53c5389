"""A cached key store's database reads of API keys, counted, and held or failed at will."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from reelflow_common.store import ApiKeyStore
from reelflow_common.store.auth import Grant


class KeyReads:
    """What one store was asked and what it read.

    ``asked``: the keys callers asked it for (``cached_grant``, which the api calls and
    ``tenant_for_key`` calls), in order; a caller that is in it has got its answer from
    memory, or is waiting for a lookup (``cached_grant`` does not wait before that).
    ``started``: the keys it read from the database (``grant_for_key``), and once each
    read returned, ``finished``. A read of a key ``held`` says waits for ``release``
    first; ``fail``, when set, is raised instead of reading.
    """

    def __init__(self, keys: ApiKeyStore, held: Callable[[str], bool]) -> None:
        self._ask = keys.cached_grant
        self._read = keys.grant_for_key
        self._held = held
        self.asked: list[str] = []
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def cached_grant(self, key: str) -> Grant | None:
        self.asked.append(key)
        return await self._ask(key)

    async def grant_for_key(self, key: str) -> Grant | None:
        self.started.append(key)
        if self._held(key):
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        grant = await self._read(key)
        self.finished.append(key)
        return grant

    def reads_of(self, key: str) -> int:
        return self.started.count(key)


def key_reads(
    keys: ApiKeyStore, monkeypatch: pytest.MonkeyPatch, *, held: Callable[[str], bool]
) -> KeyReads:
    """Count what ``keys`` is asked and reads from now on, holding the reads ``held`` says."""
    reads = KeyReads(keys, held)
    monkeypatch.setattr(keys, "cached_grant", reads.cached_grant)
    monkeypatch.setattr(keys, "grant_for_key", reads.grant_for_key)
    return reads
