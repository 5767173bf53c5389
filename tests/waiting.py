"""Waiting in tests: for a condition, with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

DEADLINE_S = 15.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = DEADLINE_S
) -> None:
    """Wait until ``condition`` holds, checking often, failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)  # between checks; the deadline bounds the wait
