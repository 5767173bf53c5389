"""Process life: a stop event, waiting for a dependency, and background and periodic work."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from reelflow_common.backoff import Backoff
from reelflow_common.logging import get_logger
from reelflow_common.ops import EXIT_PORT_TAKEN, PortTaken
from reelflow_common.transient import is_transient

T = TypeVar("T")

#: how long a service waits between attempts to reach a dependency that is down
WAIT_BACKOFF = Backoff(first_s=0.25, cap_s=5.0, factor=2.0, jitter=0.2)

log = get_logger(__name__)


class Stopped(Exception):
    """``stop`` was set while the service was still waiting for a dependency."""


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's ``main()`` to its end on uvloop: every service's ``__main__`` does.

    uvloop's event loop and transports are C: measured on the broker, a confirmed
    publish costs 10-15 % less CPU than on asyncio's own loop, a delivery and its ack
    15 % less. Where uvloop is not installed (``uvicorn[standard]`` has none on
    Windows or PyPy), asyncio's loop runs it.
    """
    try:
        import uvloop  # optional: only where it is installed
    except ImportError:
        asyncio.run(_port_taken_exits(main))
        return
    uvloop.run(_port_taken_exits(main))


async def _port_taken_exits(main: Coroutine[Any, Any, None]) -> None:
    """A service whose HTTP port is taken (:class:`PortTaken`) exits with one log line and
    ``EXIT_PORT_TAKEN``, no traceback: its launcher tells that exit from a crash. Logged
    in the loop, where ``main`` bound the service's name to every line."""
    try:
        await main
    except PortTaken as exc:
        log.error("http_port_taken", error=str(exc))
        sys.exit(EXIT_PORT_TAKEN)


def shutdown_event() -> asyncio.Event:
    """An event set on SIGTERM (Kubernetes, docker) or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for(
    dependency: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    stop: asyncio.Event | None = None,
    backoff: Backoff = WAIT_BACKOFF,
    on_failure: Callable[[Exception], object] | None = None,
) -> T:
    """``attempt()`` until it succeeds; while it fails with an outage, log it and back off.

    The one way a service waits for RabbitMQ, MongoDB or anything else at start.
    An error that is not an outage (see ``is_transient``) is raised at once: a
    bug or a bad setting needs a person, not patience. Raises :class:`Stopped`
    when ``stop`` is set first. ``on_failure`` is told each failure waited out, before
    it is logged (``ops.FirstLink.failed``: what kind of failure keeps a link from coming).
    """
    failures = 0
    while True:
        if stop is not None and stop.is_set():
            raise Stopped(dependency)
        try:
            result = await attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if on_failure is not None:
                on_failure(exc)
            pause_s = backoff.delay_s(failures)
            failures += 1
            log.warning(
                "waiting_for_dependency",
                dependency=dependency,
                attempts=failures,
                retry_in_s=round(pause_s, 2),
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            if failures:
                log.info("dependency_available", dependency=dependency, attempts=failures + 1)
            return result
        if stop is None:
            await asyncio.sleep(pause_s)
        elif await stopped_within(stop, pause_s):
            raise Stopped(dependency)


async def stopped_within(stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait ``timeout_s``, or less if ``stop`` is set; whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=timeout_s)
    except TimeoutError:
        return False
    return True


@asynccontextmanager
async def in_background(
    work: Coroutine[Any, Any, None], *, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` in a task of its own while the block runs; cancel it on exit.

    For start-up work a service must not wait for before it answers (a
    connection, indexes): a crash is logged, since nothing else awaits the task.
    """
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_log_crash)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background_work_crashed", work=task.get_name(), error=repr(exc), exc_info=exc)


#: How long a stop lets periodic work under way finish before cancelling it. A write cancelled
#: after it reached the database may be done again (the completion counts: two pollers
#: stopped together counted 6 completions of 4 without it), so it gets a moment; work held
#: by an outage (a sweep, a refresh waiting out a server selection) is cancelled, so a stop
#: does not wait out its timeouts one after another (chaos: a copy sweep, then the last
#: writes, held a poller's stop for 23.8 s during a MongoDB outage).
STOP_GRACE_S = 2.0


async def every(
    interval_s: float, work: Callable[[], Awaitable[object]], *, stop: asyncio.Event, name: str
) -> None:
    """Run ``work`` every ``interval_s`` until ``stop``; a failed run is logged, not fatal.
    A run under way when ``stop`` is set is cancelled after :data:`STOP_GRACE_S` (the
    periodic work is a sweep or a flush, which the next start or run does again)."""
    while not stop.is_set():
        try:
            await cut_short_by(stop, work())
        except Exception:
            log.exception("periodic_work_failed", work=name)
        if await stopped_within(stop, interval_s):
            return


async def cut_short_by(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None if it was cancelled, not having ended :data:`STOP_GRACE_S`
    after ``stop`` was set; what it raises, it raises."""
    running = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((running, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            await asyncio.wait((running,), timeout=STOP_GRACE_S)
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()
            try:
                await running
            except asyncio.CancelledError:
                if _cancelled_itself():  # not only the work: this task too
                    raise
    if running.cancelled():
        return None
    return running.result()


def _cancelled_itself() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
