"""Work that outlives its request: it runs to its end, the shutdown waits for it, and an
error nobody is left to receive is logged."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from reelflow_api.outliving import OutlivingWork
from tests.waiting import DEADLINE_S, eventually


async def held(gate: asyncio.Event, done: list[str], *, error: Exception | None = None) -> str:
    await gate.wait()
    for _ in range(5):  # a write takes several turns of the event loop
        await asyncio.sleep(0)
    if error is not None:
        raise error
    done.append("written")
    return "written"


async def test_a_cancelled_request_leaves_its_work_running_and_the_shutdown_waits() -> None:
    work, gate, done = OutlivingWork(), asyncio.Event(), list[str]()
    request = asyncio.create_task(work.run(held(gate, done)))
    await eventually(lambda: work.running == 1, "the work started")

    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    assert work.running == 1  # the request is gone, its work is not
    shutdown = asyncio.create_task(work.drain(timeout_s=DEADLINE_S))
    gate.set()
    await asyncio.wait_for(shutdown, DEADLINE_S)

    assert done == ["written"]
    assert work.running == 0


async def test_the_shutdown_waits_no_longer_than_its_bound() -> None:
    work, gate, done = OutlivingWork(), asyncio.Event(), list[str]()
    request = asyncio.create_task(work.run(held(gate, done)))
    await eventually(lambda: work.running == 1, "the work started")

    with capture_logs() as lines:
        await asyncio.wait_for(work.drain(timeout_s=0.01), DEADLINE_S)

    assert [line["tasks"] for line in lines if line["event"] == "request_work_cut"] == [1]
    assert work.running == 1
    assert done == []
    gate.set()
    assert await request == "written"


async def test_an_error_goes_to_its_request_or_to_the_log_when_the_request_is_gone() -> None:
    work = OutlivingWork()
    with capture_logs() as lines:
        gate = asyncio.Event()
        gate.set()
        with pytest.raises(RuntimeError, match="answered"):
            await work.run(held(gate, [], error=RuntimeError("answered")))

        orphaned_gate = asyncio.Event()
        request = asyncio.create_task(
            work.run(held(orphaned_gate, [], error=RuntimeError("nobody to tell")))
        )
        await eventually(lambda: work.running == 1, "the work started")
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        orphaned_gate.set()
        await eventually(lambda: work.running == 0, "the work ended")

    logged = [line for line in lines if line["event"] == "work_failed_after_its_request_went"]
    assert [line["error"] for line in logged] == ["RuntimeError('nobody to tell')"]


async def failing_at_once() -> None:
    raise RuntimeError("failed before anyone looked")


async def test_work_that_fails_in_the_turn_its_request_is_cancelled_is_logged() -> None:
    work = OutlivingWork()
    with capture_logs() as lines:
        request = asyncio.create_task(work.run(failing_at_once()))
        await asyncio.sleep(0)  # the request starts its work and waits on the shield
        request.cancel()  # the work runs (and fails) in the same turn as the cancel lands
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await eventually(lambda: work.running == 0, "the work ended")

    logged = [line for line in lines if line["event"] == "work_failed_after_its_request_went"]
    assert [line["error"] for line in logged] == ["RuntimeError('failed before anyone looked')"]
