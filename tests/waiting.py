"""Waiting in tests: for a condition, with a deadline, never a bare sleep.

The deadline loop is the devtools' own (:func:`reelflow_devtools.waiting.poll_until_async`):
a probe still running at the deadline is cancelled, and a test fails with an
``AssertionError`` that says what it waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from reelflow_devtools.waiting import poll_until_async

T = TypeVar("T")

# Every test's constants for waiting. Generous for a slow, shared 2-core machine:
# a passing test never waits this long, a failing one says what it waited for.
DEADLINE_S = 20.0  # for what the test process runs itself (services, simulator, clients)
PROCESS_DEADLINE_S = 90.0  # for the services run as processes (the end-to-end tests)
# for a service started in the test process to link to the shared broker: declaring its
# quorum queues waits while other tests' workers create and delete hundreds of theirs
READY_DEADLINE_S = 60.0
PROCESS_PAUSE_S = 0.2  # between probes that each cost a request to a running process
PAUSE_S = 0.02


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = DEADLINE_S
) -> None:
    """Wait until ``condition`` holds, checking often, failing after ``timeout_s``."""

    async def probe() -> bool | None:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        return True if result else None

    await eventually_returns(probe, what, timeout_s)


async def eventually_returns(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    timeout_s: float = DEADLINE_S,
    *,
    pause_s: float = PAUSE_S,
) -> T:
    """Call ``probe`` until it returns something other than None, and return that.

    Fails after ``timeout_s`` saying what never happened. A probe that costs a
    request to a running process is better spaced out with a longer ``pause_s``.
    """
    return await poll_until_async(
        probe, what=what, deadline_s=timeout_s, pause_s=pause_s, error=AssertionError
    )


async def eventually_matches(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    timeout_s: float = DEADLINE_S,
) -> T:
    """Call ``probe`` until ``done`` holds for its value, and return that value.

    For states that come about on their own (a reconnect, a concurrent request).
    """

    async def checked() -> T | None:
        value = await probe()
        return value if done(value) else None

    return await eventually_returns(checked, what, timeout_s)


async def end_of_pass() -> None:
    """Return once the callbacks scheduled so far have run (``call_soon`` is first in, first
    out): what the code under test left for the end of this pass of the event loop."""
    loop = asyncio.get_running_loop()
    marker = loop.create_future()
    loop.call_soon(marker.set_result, None)
    await marker
