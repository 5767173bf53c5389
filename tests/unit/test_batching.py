"""The Batcher: calls made while a batch runs go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from reelflow_common.batching import Batcher


class Recorder:
    """A batch function that records its batches and waits for ``gate`` before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        await self.gate.wait()
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in items]


async def started_and_held(recorder: Recorder, batcher: Batcher[int, int]) -> asyncio.Task[int]:
    """A first call whose batch is running and held at the gate."""
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(recorder.started.wait(), timeout=5)
    return first


async def queued_behind_a_running_batch(
    recorder: Recorder, batcher: Batcher[int, int], items: Sequence[int]
) -> tuple[asyncio.Task[int], list[asyncio.Task[int]]]:
    """A first call held at the gate, and calls of ``items`` waiting behind its batch."""
    first = await started_and_held(recorder, batcher)
    later = [asyncio.create_task(batcher.submit(item)) for item in items]
    await asyncio.sleep(0)  # they are waiting, not running: the first batch holds the gate
    return first, later


async def test_a_lone_call_is_a_batch_of_one() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10)

    assert await asyncio.wait_for(batcher.submit(4), timeout=5) == 40
    assert recorder.batches == [[4]]


async def test_calls_made_while_a_batch_runs_go_together_in_the_next() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10)
    first, later = await queued_behind_a_running_batch(recorder, batcher, (2, 4, 6))
    recorder.gate.set()

    assert await asyncio.wait_for(asyncio.gather(first, *later), timeout=5) == [0, 20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]


async def test_its_owner_hears_once_the_last_batch_has_run_and_nothing_waits() -> None:
    recorder = Recorder()
    idle: list[int] = []
    batcher = Batcher(recorder, max_batch=10, on_idle=lambda: idle.append(len(recorder.batches)))
    first, later = await queued_behind_a_running_batch(recorder, batcher, (2, 4))
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), timeout=5)

    assert idle == [2]  # after both batches, not between them
    assert await asyncio.wait_for(batcher.submit(6), timeout=5) == 60  # and it starts again
    assert idle == [2, 3]


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=2)
    first, later = await queued_behind_a_running_batch(recorder, batcher, (2, 4, 6, 8, 10))
    recorder.gate.set()

    assert await asyncio.wait_for(asyncio.gather(first, *later), timeout=5) == [
        0,
        20,
        40,
        60,
        80,
        100,
    ]
    assert recorder.batches == [[0], [2, 4], [6, 8], [10]]


async def test_an_item_that_fails_alone_fails_only_its_caller() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10)
    first, (even, odd) = await queued_behind_a_running_batch(recorder, batcher, (2, 3))
    recorder.gate.set()

    assert await asyncio.wait_for(even, timeout=5) == 20
    with pytest.raises(ValueError, match="odd 3"):
        await asyncio.wait_for(odd, timeout=5)
    assert await first == 0
    assert recorder.batches == [[0], [2, 3]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def failing_once(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("database gone")
        return list(items)

    batcher = Batcher(failing_once, max_batch=10)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(item) for item in (1, 2)), return_exceptions=True),
        timeout=5,
    )

    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    assert await asyncio.wait_for(batcher.submit(3), timeout=5) == 3


async def test_a_caller_that_gave_up_is_left_out_and_the_others_are_answered() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10)
    first, (gone, kept) = await queued_behind_a_running_batch(recorder, batcher, (2, 4))
    gone.cancel()
    recorder.gate.set()

    assert await asyncio.wait_for(kept, timeout=5) == 40
    assert await first == 0
    assert gone.cancelled()
    assert recorder.batches == [[0], [4]]


@pytest.mark.parametrize("extra", [-1, 1])
async def test_a_batch_with_the_wrong_number_of_outcomes_fails_its_callers_and_the_next_runs(
    extra: int,
) -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def miscounting_once(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        outcomes: list[int | BaseException] = list(items)
        if len(calls) > 1:
            return outcomes
        await gate.wait()  # the calls below queue up behind this batch meanwhile
        return outcomes[:extra] if extra < 0 else [*outcomes, 99]

    batcher = Batcher(miscounting_once, max_batch=10)
    calls_made = [asyncio.create_task(batcher.submit(0))]
    await asyncio.sleep(0)
    calls_made += [asyncio.create_task(batcher.submit(item)) for item in (1, 2)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*calls_made, return_exceptions=True), 5)

    assert isinstance(results[0], RuntimeError)  # its batch ([0]) miscounted
    assert results[1:] == [1, 2]
    assert calls == [[0], [1, 2]]
