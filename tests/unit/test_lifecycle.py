"""Waiting for a dependency: outages are waited out, anything else is raised, stop ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError
from structlog.testing import capture_logs

from reelflow_common import lifecycle
from reelflow_common.backoff import Backoff
from reelflow_common.errors import TransientError
from reelflow_common.lifecycle import Stopped, wait_for
from reelflow_common.mongo import Indexes
from tests.waiting import DEADLINE_S, eventually

FAST = Backoff(first_s=0.001, cap_s=0.004)


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers ``"up"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "up"


async def test_an_outage_is_waited_out_and_each_attempt_logged() -> None:
    attempt = Flaky(3, ServerSelectionTimeoutError("no server"))

    with capture_logs() as logs:
        assert await wait_for("mongodb", attempt, backoff=FAST) == "up"

    waiting = [line for line in logs if line["event"] == "waiting_for_dependency"]
    assert [line["attempts"] for line in waiting] == [1, 2, 3]
    assert [line["retry_in_s"] for line in waiting] == [0.0, 0.0, 0.0]  # rounded to 10 ms
    assert all(line["dependency"] == "mongodb" for line in waiting)
    assert "ServerSelectionTimeoutError" in waiting[0]["error"]
    (available,) = [line for line in logs if line["event"] == "dependency_available"]
    assert available["attempts"] == 4


async def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    attempt = Flaky(1, OperationFailure("index options conflict", 85))

    with pytest.raises(OperationFailure):
        await wait_for("mongodb", attempt, backoff=FAST)

    assert attempt.calls == 1


async def test_stop_ends_the_wait_with_stopped() -> None:
    stop = asyncio.Event()
    attempt = Flaky(10**9, TransientError("down"))
    waiting = asyncio.create_task(
        wait_for("rabbitmq", attempt, stop=stop, backoff=Backoff(first_s=60, cap_s=60))
    )
    with capture_logs() as logs:
        await eventually(lambda: bool(logs), "the first attempt failed")

    stop.set()

    with pytest.raises(Stopped, match="rabbitmq"):
        await asyncio.wait_for(waiting, DEADLINE_S)


async def test_a_stop_set_before_the_first_attempt_makes_none() -> None:
    stop = asyncio.Event()
    stop.set()
    attempt = Flaky(0, TransientError("down"))

    with pytest.raises(Stopped):
        await wait_for("rabbitmq", attempt, stop=stop)

    assert attempt.calls == 0


# --- the index build every service waits for ---------------------------------------


def indexes(*steps: Any) -> Indexes:
    return Indexes(db=None, steps=steps)  # type: ignore[arg-type]  # only ready() reads it


async def test_waiting_for_indexes_returns_once_every_step_ran() -> None:
    ran: list[str] = []

    async def step() -> None:
        ran.append("step")

    build = indexes(step, step)
    async with build.in_background():
        await asyncio.wait_for(build.wait(stop=asyncio.Event()), DEADLINE_S)

    assert ran == ["step", "step"]
    assert build.ensured.is_set()


async def test_waiting_for_indexes_raises_the_error_of_a_build_that_cannot_succeed() -> None:
    build = indexes(Flaky(1, OperationFailure("index options conflict", 85)))

    with capture_logs():  # the background task's crash is logged as well
        async with build.in_background():
            with pytest.raises(OperationFailure):
                await asyncio.wait_for(build.wait(stop=asyncio.Event()), DEADLINE_S)

    assert not build.ensured.is_set()


async def test_waiting_for_indexes_ends_with_stopped_on_stop() -> None:
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    build = indexes(hang)
    stop = asyncio.Event()
    async with build.in_background():
        waiting = asyncio.create_task(build.wait(stop=stop))
        stop.set()
        with pytest.raises(Stopped):
            await asyncio.wait_for(waiting, DEADLINE_S)


async def test_periodic_work_under_way_at_stop_is_cancelled_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sweep held by a database outage (a server selection of 10 s, then the next) held a
    # poller's stop for 23.8 s in a chaos run: a stop cuts it short.
    monkeypatch.setattr(lifecycle, "STOP_GRACE_S", 0.01)
    stop = asyncio.Event()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def held() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never answered
        except asyncio.CancelledError:
            cancelled.set()
            raise

    running = asyncio.create_task(lifecycle.every(60, held, stop=stop, name="held"))
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    stop.set()
    await asyncio.wait_for(running, DEADLINE_S)
    assert cancelled.is_set()


async def test_periodic_work_that_ends_within_the_grace_is_not_cancelled() -> None:
    stop = asyncio.Event()
    ended: list[str] = []

    async def flush() -> None:
        stop.set()  # the stop comes while the run is under way
        await asyncio.sleep(0)
        ended.append("flushed")

    await asyncio.wait_for(lifecycle.every(60, flush, stop=stop, name="flush"), DEADLINE_S)
    assert ended == ["flushed"]
