"""A cached key store's database reads of API keys, counted, and held or failed at will."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from reelflow_common.store import ApiKeyStore
from reelflow_common.store.auth import Grant


class KeyReads:
    """Stands in for ``grant_for_key`` of one store: each read is counted in ``started`` (the
    keys, in order) and, once it returned, in ``finished``; a key ``held`` says waits for
    ``release`` first, and ``fail`` (when set) is raised instead of reading."""

    def __init__(self, keys: ApiKeyStore, held: Callable[[str], bool]) -> None:
        self._read = keys.grant_for_key
        self._held = held
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

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
    """Count (and hold, for keys ``held`` says) the reads ``keys`` makes from now on."""
    reads = KeyReads(keys, held)
    monkeypatch.setattr(keys, "grant_for_key", reads.grant_for_key)
    return reads
