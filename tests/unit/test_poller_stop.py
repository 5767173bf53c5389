"""The poller's stop: its last statistics writes go side by side."""

from __future__ import annotations

import asyncio

import pytest

from reelflow_poller.main import last_flushes
from tests.waiting import DEADLINE_S


async def test_the_last_writes_of_completion_counts_and_costs_run_side_by_side() -> None:
    # One after the other, a MongoDB outage at a stop cost a server selection each.
    started: list[str] = []
    both = asyncio.Event()

    async def flush(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both.set()
        await both.wait()  # each waits for the other to have started

    class Costs:
        async def flush(self) -> None:
            await flush("costs")

    await asyncio.wait_for(last_flushes(flush("completion counts"), Costs()), DEADLINE_S)  # type: ignore[arg-type]

    assert sorted(started) == ["completion counts", "costs"]


async def test_a_failing_last_write_leaves_the_other_to_finish_before_the_stop_goes_on() -> None:
    # Otherwise the cost statistics' write would run on while the stop closes its client.
    raised = asyncio.Event()
    finished: list[str] = []

    async def counts_write() -> None:
        raised.set()
        raise RuntimeError("a bug in the last write")

    class Costs:
        async def flush(self) -> None:
            await raised.wait()
            for _ in range(5):  # event-loop turns, more than the failure takes to surface
                await asyncio.sleep(0)
            finished.append("costs")

    with pytest.raises(RuntimeError, match="a bug in the last write"):
        await asyncio.wait_for(last_flushes(counts_write(), Costs()), DEADLINE_S)  # type: ignore[arg-type]

    assert finished == ["costs"]
