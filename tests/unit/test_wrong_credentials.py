"""What a wrong API key or ticket costs: bounded lookups, and none for a malformed ticket."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from reelflow_common.mongo import Database
from reelflow_common.store.auth import UNKNOWN_LOOKUPS_AT_ONCE, CachedApiKeyStore, Grant
from reelflow_common.store.tickets import WsTicketStore
from tests.waiting import eventually


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
            cast(Database, NoDatabase()), ttl_s=5, max_entries=10, clock=lambda: clock[0]
        )
        self.released = asyncio.Event()
        self.running = 0
        self.grants = {"rf_valid": Grant("t1", expires_at=None)}

    async def grant_for_key(self, key: str) -> Grant | None:
        self.running += 1
        try:
            await self.released.wait()
            return self.grants.get(key)
        finally:
            self.running -= 1


async def test_unknown_keys_are_looked_up_a_few_at_a_time_and_a_known_one_never_waits() -> None:
    clock = [100.0]
    keys = HeldLookups(clock)
    keys.released.set()
    assert await keys.tenant_for_key("rf_valid") == "t1"
    keys.released.clear()
    clock[0] += 10  # the valid key is due to be read again

    wrong = [asyncio.create_task(keys.tenant_for_key(f"rf_wrong-{i}")) for i in range(50)]
    valid = asyncio.create_task(keys.tenant_for_key("rf_valid"))
    await eventually(lambda: keys.running > UNKNOWN_LOOKUPS_AT_ONCE, "the lookups to start")
    running = keys.running
    keys.released.set()

    assert running == UNKNOWN_LOOKUPS_AT_ONCE + 1  # the valid key's read beside the wrong ones
    assert await valid == "t1"
    assert await asyncio.gather(*wrong) == [None] * 50


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
