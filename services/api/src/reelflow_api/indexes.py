"""MongoDB indexes, ensured in the background so the API starts while MongoDB is down.

An API pod without MongoDB should still start, answer ``/healthz`` and report
``503`` on ``/readyz`` (so Kubernetes keeps traffic away without restarting it),
then become ready by itself once MongoDB answers and the indexes exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from pymongo.errors import ConnectionFailure, PyMongoError

from reelflow_common.logging import get_logger

log = get_logger(__name__)

Step = Callable[[], Awaitable[None]]


class Indexes:
    """Runs every ``ensure_indexes`` step until all of them succeed once."""

    def __init__(self, steps: Sequence[Step], *, retry_s: float) -> None:
        self._steps = steps
        self._retry_s = retry_s
        self.ensured = asyncio.Event()

    async def ensure(self) -> None:
        """Try, and try again after ``retry_s``, until every step succeeded."""
        attempt = 0
        while True:
            attempt += 1
            try:
                for step in self._steps:
                    await step()
            except PyMongoError as exc:
                # Unreachable is expected while MongoDB starts; anything else needs a person.
                level = log.warning if isinstance(exc, ConnectionFailure) else log.error
                level("indexes_not_ensured", attempt=attempt, error=repr(exc))
                await asyncio.sleep(self._retry_s)
                continue
            self.ensured.set()
            log.info("indexes_ensured", attempts=attempt)
            return

    @asynccontextmanager
    async def in_background(self) -> AsyncIterator[Indexes]:
        """Ensure the indexes in a task of their own, cancelled on exit if still trying."""
        task = asyncio.create_task(self.ensure(), name="ensure_indexes")
        task.add_done_callback(_log_crash)
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _log_crash(task: asyncio.Task[None]) -> None:
    # Not a MongoDB error: a bug. The API stays unready, and this line says why.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("indexes_crashed", error=repr(exc), exc_info=exc)
