"""The one way the devtools wait: probe until it finds something, a child dies, or a deadline.

A launcher waiting for a child it started (a service's health, the simulator's URL,
a broker or database listening) and a benchmark waiting for its stack (projects
done, workers consuming) all poll the same way. The order is fixed: probe, then
the watched children (a dead child fails the wait even when the probe just
succeeded: what answered was not it, e.g. another process on the port it could
not bind), then the deadline. The probe always runs at least once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Watched(Protocol):
    """A child process waited for (:class:`reelflow_devtools.processes.Child`)."""

    name: str
    process: subprocess.Popen[bytes]

    def alive(self) -> bool: ...

    def log_tail(self, lines: int = 30) -> str: ...


def _children(child: Watched | Iterable[Watched] | None) -> list[Watched]:
    if child is None:
        return []
    if isinstance(child, Iterable):
        return list(child)
    return [child]


def _with_tail(message: str, children: list[Watched]) -> str:
    tails = [child.log_tail() for child in children]
    shown = [tail for tail in tails if tail]
    return message if not shown else f"{message}:\n" + "\n".join(shown)


def _check_children(children: list[Watched], what: str, error: type[Exception]) -> None:
    for child in children:
        if not child.alive():
            raise error(
                _with_tail(
                    f"{child.name} exited ({child.process.returncode}) while waiting for {what}",
                    [child],
                )
            )


def _timed_out(
    what: str, deadline_s: float, children: list[Watched], error: type[Exception]
) -> Exception:
    return error(_with_tail(f"timed out after {deadline_s:g} s waiting for {what}", children))


def poll_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    deadline_s: float,
    pause_s: float,
    error: type[Exception],
    child: Watched | Iterable[Watched] | None = None,
) -> T:
    """Call ``probe`` every ``pause_s`` until it returns something other than None; that.

    Raises ``error`` (the caller's: a launcher's ``StartError``, a benchmark's
    ``BenchError``) with the child's log tail once a watched ``child`` has exited,
    or naming ``what`` once ``deadline_s`` has passed.
    """
    children = _children(child)
    stop_at = time.monotonic() + deadline_s
    while True:
        found = probe()
        _check_children(children, what, error)
        if found is not None:
            return found
        left_s = stop_at - time.monotonic()
        if left_s <= 0:
            raise _timed_out(what, deadline_s, children, error)
        time.sleep(min(pause_s, left_s))  # between probes; the deadline bounds the wait


async def poll_until_async(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    deadline_s: float,
    pause_s: float,
    error: type[Exception],
    child: Watched | Iterable[Watched] | None = None,
) -> T:
    """:func:`poll_until` for an async probe; a probe still running at the deadline is
    cancelled (the deadline bounds the whole wait, a hung probe too)."""
    children = _children(child)
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline_s
    while True:
        bound = asyncio.timeout_at(stop_at)
        try:
            async with bound:
                found = await probe()
        except TimeoutError:
            if not bound.expired():
                raise  # the probe's own timeout, not the deadline
            _check_children(children, what, error)
            raise _timed_out(what, deadline_s, children, error) from None
        _check_children(children, what, error)
        if found is not None:
            return found
        left_s = stop_at - loop.time()
        if left_s <= 0:
            raise _timed_out(what, deadline_s, children, error)
        await asyncio.sleep(min(pause_s, left_s))  # between probes; the deadline bounds it
