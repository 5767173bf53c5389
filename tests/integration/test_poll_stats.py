"""Completion statistics shared through MongoDB by replicas and across restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reelflow_common.polling.book import CompletionBook, profile_key
from reelflow_common.polling.learned import LearnedPlanner, PlannerConfig
from reelflow_common.polling.plan import ClipProfile
from reelflow_common.polling.stats import COLLECTION, PollStats
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration

VEO = ClipProfile("google:3@3", duration=4, width=1280, height=720)
LITE = ClipProfile("google:veo@3.1-lite", duration=8, width=1280, height=720)
TODAY = 20_000


def clock_on(day: int) -> float:
    return day * 86_400.0 + 3_600.0


async def replica(db: Any, *, day: int = TODAY) -> PollStats:
    stats = PollStats(db, CompletionBook(), days=7, clock=lambda: clock_on(day))
    await stats.ensure_indexes()
    return stats


async def test_two_replicas_share_their_counts_with_a_third_that_starts_later(
    mongo_db: Any,
) -> None:
    first, second = await replica(mongo_db), await replica(mongo_db)
    for latency in (80.0, 90.0, 100.0):
        first.observe(VEO, elapsed_s=latency)
    for latency in (85.0, 95.0):
        second.observe(VEO, elapsed_s=latency, since_s=latency - 10.0)
    second.observe(LITE, elapsed_s=70.0)  # a model name with a dot in it

    assert await first.flush() == 1
    assert await second.flush() == 2
    restarted = await replica(mongo_db)
    await restarted.load()

    assert restarted.book.observations(VEO) == pytest.approx(5.0)
    assert restarted.book.observations(LITE) == pytest.approx(1.0)
    assert await mongo_db[COLLECTION].count_documents({}) == 2  # one per profile and day
    doc = await mongo_db[COLLECTION].find_one({"key": profile_key(VEO)})
    assert doc["n"] == pytest.approx(5.0)
    assert doc["model"] == "google:3@3"


async def test_a_restarted_planner_plans_what_the_old_one_learned(mongo_db: Any) -> None:
    before = await replica(mongo_db)
    for i in range(300):
        before.observe(VEO, elapsed_s=250.0 + i % 60)
    await before.flush()
    await before.load()
    planned = LearnedPlanner(before.book).first_check_s(VEO)

    after = await replica(mongo_db)
    await after.load()

    assert LearnedPlanner(after.book).first_check_s(VEO) == pytest.approx(planned)
    assert planned > 200.0


async def test_sub_second_completions_are_stored_and_planned_from(mongo_db: Any) -> None:
    """A compressed stack's tasks finish in tens of milliseconds: their buckets (numbered
    below zero) go through MongoDB like any other, and the plan follows them there."""
    fast = await replica(mongo_db)
    for i in range(100):
        fast.observe(VEO, elapsed_s=0.04 + 0.0001 * i)
    await fast.flush()

    restarted = await replica(mongo_db)
    await restarted.load()

    assert restarted.book.observations(VEO) == pytest.approx(100.0)
    compressed = PlannerConfig(delay_target_s=0.1, max_interval_s=0.6, min_interval_s=0.01)
    assert LearnedPlanner(restarted.book, compressed).first_check_s(VEO) < 0.1


async def test_counts_older_than_the_window_are_left_out(mongo_db: Any) -> None:
    old = await replica(mongo_db, day=TODAY - 10)
    old.observe(VEO, elapsed_s=500.0)
    await old.flush()
    recent = await replica(mongo_db, day=TODAY - 2)
    recent.observe(VEO, elapsed_s=90.0)
    await recent.flush()

    today = await replica(mongo_db)
    await today.load()

    assert today.book.observations(VEO) == pytest.approx(1.0)


async def test_the_loop_writes_and_rereads_until_stopped_then_writes_once_more(
    mongo_db: Any,
) -> None:
    stats = await replica(mongo_db)
    stop = asyncio.Event()
    running = asyncio.create_task(stats.run(stop, interval_s=0.05))
    stats.observe(VEO, elapsed_s=90.0)

    await eventually(lambda: stats.book.observations(VEO) == 1.0, "own count read back")
    stats.observe(VEO, elapsed_s=91.0)
    stop.set()
    await asyncio.wait_for(running, timeout=DEADLINE_S)

    doc = await mongo_db[COLLECTION].find_one({"key": profile_key(VEO)})
    assert doc["n"] == pytest.approx(2.0)


async def test_a_stop_does_not_wait_for_a_refresh_held_by_the_database(
    mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refresh waiting out an outage (a write, then a read: a server selection each) held a
    # poller's stop for 20 s before its last write waited out a third (make chaos: a SIGTERM
    # during a MongoDB outage overran its 30 s).
    stats = await replica(mongo_db)
    collection = stats._collection
    real_bulk_write = collection.bulk_write
    held = asyncio.Event()

    async def first_write_held(*args: Any, **kwargs: Any) -> Any:
        if not held.is_set():
            held.set()
            await asyncio.Event().wait()  # the database that does not answer
        return await real_bulk_write(*args, **kwargs)

    monkeypatch.setattr(stats, "_collection", collection)
    monkeypatch.setattr(collection, "bulk_write", first_write_held)
    stop = asyncio.Event()
    stats.observe(VEO, elapsed_s=90.0)
    running = asyncio.create_task(stats.run(stop, interval_s=0.05))

    await asyncio.wait_for(held.wait(), timeout=DEADLINE_S)
    stop.set()
    await asyncio.wait_for(running, timeout=DEADLINE_S)

    # The held write's counts were kept for the last one.
    doc = await mongo_db[COLLECTION].find_one({"key": profile_key(VEO)})
    assert doc["n"] == pytest.approx(1.0)


async def test_a_refresh_write_answered_just_after_a_stop_is_counted_once(
    mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI: two pollers stopped together counted 6 completions of 4. A refresh's write that had
    # reached the database was cancelled by the stop before its answer came, its counts were
    # given back, and the last write counted them again.
    stats = await replica(mongo_db)
    collection = stats._collection
    real_bulk_write = collection.bulk_write
    stop = asyncio.Event()
    landed = asyncio.Event()

    async def answered_after_the_stop(*args: Any, **kwargs: Any) -> Any:
        result = await real_bulk_write(*args, **kwargs)
        landed.set()
        await stop.wait()
        await asyncio.sleep(0.05)  # the answer on its way back when the stop comes
        return result

    monkeypatch.setattr(collection, "bulk_write", answered_after_the_stop)
    stats.observe(VEO, elapsed_s=90.0)
    running = asyncio.create_task(stats.run(stop, interval_s=0.05))
    await asyncio.wait_for(landed.wait(), timeout=DEADLINE_S)

    stop.set()
    await asyncio.wait_for(running, timeout=DEADLINE_S)

    doc = await mongo_db[COLLECTION].find_one({"key": profile_key(VEO)})
    assert doc["n"] == pytest.approx(1.0)


async def test_a_stop_cancelled_itself_while_a_refresh_winds_down_writes_nothing_more(
    mongo_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's own cancellation, come while the cancelled refresh winds down, is not
    # taken for the refresh's: the loop ends cancelled, without a last write that would wait
    # out the database again.
    stats = await replica(mongo_db)
    collection = stats._collection
    writes: list[str] = []
    winding_down = asyncio.Event()

    async def write_held(*args: Any, **kwargs: Any) -> Any:
        writes.append("write")
        if len(writes) > 1:
            return None  # a last write: answered
        try:
            await asyncio.Event().wait()  # the database that does not answer
        except asyncio.CancelledError:
            winding_down.set()
            await asyncio.Event().wait()  # until cancelled again
        raise AssertionError("unreachable")

    monkeypatch.setattr(collection, "bulk_write", write_held)
    stop = asyncio.Event()
    stats.observe(VEO, elapsed_s=90.0)
    running = asyncio.create_task(stats.run(stop, interval_s=0.05))
    await eventually(lambda: writes == ["write"], "the refresh's write under way")

    stop.set()
    await asyncio.wait_for(winding_down.wait(), timeout=DEADLINE_S)
    running.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=DEADLINE_S)
    assert writes == ["write"]
