"""The load client stamps a read when it arrives, even while it handles earlier ones."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import pytest

from reelflow_devtools.bench.ws_load import Inbox
from tests.waiting import DEADLINE_S

#: reads queued before the one that arrives late, and how long each takes to handle
QUEUED = 200
HANDLING_S = 0.001


#: the loops a load process may run on (``ws_load.main``: uvloop where installed)
LOOPS = ["asyncio", "uvloop"]


def _run_on(loop: str, case: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop").run(case())
    else:
        asyncio.run(case())


def _busy(seconds: float) -> None:
    """Spend ``seconds`` of CPU, as decoding a message does."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


class _Stamped(asyncio.Protocol):
    """A socket whose reads are stamped as the load client's are: on arrival."""

    def __init__(self, stamps: list[float]) -> None:
        self._stamps = stamps

    def data_received(self, data: bytes) -> None:
        self._stamps.append(time.perf_counter())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_read_arriving_while_a_burst_is_handled_is_stamped_before_the_burst_is_over(
    loop: str,
) -> None:
    _run_on(loop, _a_read_arriving_while_a_burst_is_handled)


async def _a_read_arriving_while_a_burst_is_handled() -> None:
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    stamps: list[float] = []
    transport, _ = await loop.create_connection(lambda: _Stamped(stamps), sock=reader)
    inbox = Inbox()
    handled: list[tuple[int, float]] = []
    all_handled: asyncio.Future[None] = loop.create_future()

    def handle(index: int) -> None:
        if index == 0:
            writer.send(b"the next change")  # arrives while the rest of the burst waits
        _busy(HANDLING_S)
        handled.append((index, time.perf_counter()))
        if len(handled) == QUEUED:
            all_handled.set_result(None)

    try:
        for index in range(QUEUED):
            inbox.put(partial(handle, index))
        await asyncio.wait_for(all_handled, DEADLINE_S)
    finally:
        transport.close()
        writer.close()

    assert [index for index, _ in handled] == list(range(QUEUED)), "handled in arrival order"
    assert stamps, "the late read was stamped"
    # Handled in one go, the burst kept the loop from reading for QUEUED x 1 ms, and the
    # read was stamped after its end; in slices, the loop reads between them.
    last_handled = handled[-1][1]
    assert stamps[0] < last_handled - QUEUED * HANDLING_S / 2


@pytest.mark.parametrize("loop", LOOPS)
def test_a_read_whose_handling_fails_stops_neither_the_reads_after_it_nor_later_ones(
    loop: str,
) -> None:
    _run_on(loop, _a_read_whose_handling_fails)


async def _a_read_whose_handling_fails() -> None:
    loop = asyncio.get_running_loop()
    reported: list[BaseException | None] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context.get("exception")))
    inbox = Inbox()
    handled: list[str] = []
    arrived: dict[str, asyncio.Future[None]] = {name: loop.create_future() for name in "ab"}

    def fail() -> None:
        raise ValueError("a malformed frame")

    def handle(name: str) -> None:
        handled.append(name)
        arrived[name].set_result(None)

    try:
        inbox.put(fail)
        inbox.put(partial(handle, "a"))
        await asyncio.wait_for(arrived["a"], DEADLINE_S)
        inbox.put(partial(handle, "b"))  # a later burst
        await asyncio.wait_for(arrived["b"], DEADLINE_S)
    finally:
        loop.set_exception_handler(None)

    assert handled == ["a", "b"]
    assert [type(exc) for exc in reported] == [ValueError], "the failure is reported, not hidden"
