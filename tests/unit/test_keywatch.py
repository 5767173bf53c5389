"""The key watch ends every socket of a key that no longer names their tenant, and only those."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from typing import Any, cast

from reelflow_common.store import ApiKeyStore, KeyLookupsBusy
from reelflow_notifier.auth import Credential
from reelflow_notifier.keywatch import KeyWatch


class Keys:
    def __init__(self) -> None:
        self.tenants: dict[str, str | None] = {"k1": "t1", "k2": "t2"}
        self.lookups = 0
        #: keys whose lookup is refused, as while wrong keys take every unknown-key lookup
        self.busy: set[str] = set()

    async def tenant_for_key(self, key: str) -> str | None:
        self.lookups += 1
        if key in self.busy:
            raise KeyLookupsBusy("8 keys not known to be valid are being looked up")
        return self.tenants.get(key)


class Socket:
    def __init__(self) -> None:
        self.ended: list[tuple[int, str]] = []

    def end(self, code: int, reason: str) -> None:
        self.ended.append((code, reason))


def test_thousands_of_sockets_of_one_key_cost_one_lookup_and_end_together() -> None:
    keys = Keys()
    watch = KeyWatch(cast(ApiKeyStore, cast(Any, keys)), interval_s=1)
    many = [Socket() for _ in range(5000)]
    other = Socket()

    with ExitStack() as open_sockets:
        open_sockets.enter_context(watch.watching(Credential("t2", "k2"), other))
        for socket in many:
            open_sockets.enter_context(watch.watching(Credential("t1", "k1"), socket))
        assert asyncio.run(watch.check_all()) == 0
        assert keys.lookups == 2

        keys.tenants["k1"] = None  # revoked
        assert asyncio.run(watch.check_all()) == 5000

    assert all(socket.ended == [(4401, "API key revoked or expired")] for socket in many)
    assert other.ended == []
    assert watch.watched_keys() == 0


def test_a_closed_socket_is_forgotten_with_its_key() -> None:
    watch = KeyWatch(cast(ApiKeyStore, cast(Any, Keys())), interval_s=1)
    with watch.watching(Credential("t1", "k1"), Socket()):
        assert watch.watched_keys() == 1
    assert watch.watched_keys() == 0


def test_a_key_whose_lookup_is_refused_for_load_is_checked_next_time_and_the_others_now() -> None:
    keys = Keys()
    watch = KeyWatch(cast(ApiKeyStore, cast(Any, keys)), interval_s=1)
    first, second = Socket(), Socket()
    with watch.watching(Credential("t1", "k1"), first):
        with watch.watching(Credential("t2", "k2"), second):
            keys.busy.add("k1")  # pushed out of the cache while a flood of wrong keys is read
            keys.tenants["k2"] = None  # revoked
            assert asyncio.run(watch.check_all()) == 1
        assert second.ended == [(4401, "API key revoked or expired")]

        keys.busy.clear()
        keys.tenants["k1"] = None
        assert asyncio.run(watch.check_all()) == 1

    assert first.ended == [(4401, "API key revoked or expired")]
