"""What a wrong API key or ticket costs: bounded lookups, and none for a malformed ticket."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from reelflow_common.mongo import Database
from reelflow_common.store import KeyLookupsBusy
from reelflow_common.store.auth import CachedApiKeyStore, Grant
from reelflow_common.store.tickets import WsTicketStore
from tests.waiting import eventually

#: keys not known to be valid the store under test looks up at once
LOOKUPS = 3


class NoDatabase:
    """A database on which any operation fails the test."""

    def __getitem__(self, _name: str) -> NoDatabase:
        return self

    def __getattr__(self, operation: str) -> Any:
        raise AssertionError(f"a database operation: {operation}")


class HeldLookups(CachedApiKeyStore):
    """Key lookups that wait until released, counting how many run at once."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(
            cast(Database, NoDatabase()),
            ttl_s=5,
            max_entries=10,
            lookups_at_once=LOOKUPS,
            monotonic=lambda: clock[0],
        )
        self.released = asyncio.Event()
        self.running = 0
        self.reads = 0
        self.grants = {"rf_valid": Grant("t1", expires_at=None)}

    async def grant_for_key(self, key: str) -> Grant | None:
        self.running += 1
        self.reads += 1
        try:
            await self.released.wait()
            return self.grants.get(key)
        finally:
            self.running -= 1


async def test_a_key_not_known_to_be_valid_past_the_lookups_at_once_is_refused_not_queued() -> None:
    clock = [100.0]
    keys = HeldLookups(clock)
    keys.released.set()
    assert await keys.tenant_for_key("rf_valid") == "t1"
    keys.released.clear()
    clock[0] += 10  # the valid key is due to be read again
    keys.grants["rf_unseen"] = Grant("t2", expires_at=None)  # valid, never used here
    reads_before = keys.reads

    wrong = [asyncio.create_task(keys.tenant_for_key(f"rf_wrong-{i}")) for i in range(LOOKUPS)]
    await eventually(lambda: keys.running == LOOKUPS, "the lookups to start")
    # Queued, it held what its caller held (an api request slot), in a queue with no end.
    unseen = asyncio.create_task(keys.tenant_for_key("rf_unseen"))
    await eventually(unseen.done, "the answer to one more key not known to be valid")
    # Another caller of a key being looked up shares that lookup: never refused, no read.
    again = [asyncio.create_task(keys.tenant_for_key(f"rf_wrong-{i}")) for i in range(LOOKUPS)]
    remembered = asyncio.create_task(keys.tenant_for_key("rf_valid"))
    await eventually(lambda: keys.running > LOOKUPS, "the valid key's read")
    keys.released.set()

    with pytest.raises(KeyLookupsBusy):
        unseen.result()
    assert await remembered == "t1"  # read beside the wrong ones, never refused
    assert await asyncio.gather(*wrong, *again) == [None] * (2 * LOOKUPS)
    assert keys.reads - reads_before == LOOKUPS + 1  # the wrong keys once each, the valid one
    assert await keys.tenant_for_key("rf_unseen") == "t2"  # once the lookups are done


@pytest.mark.parametrize(
    "ticket",
    [
        "",
        "wst_",
        "wst_short",
        "wst_" + "a" * 42,
        "wst_" + "a" * 44,
        "wst_" + "a" * 42 + "!",
        "wst_" + "é" * 43,
        "rf_" + "a" * 44,
        "wst_" + "a" * 10_000,
    ],
)
async def test_a_malformed_ticket_is_refused_without_a_database_operation(ticket: str) -> None:
    tickets = WsTicketStore(cast(Database, NoDatabase()))

    assert await tickets.consume(ticket) is None
