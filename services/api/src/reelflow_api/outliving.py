"""Work a request starts that must run to its end even when the request does not.

A create or a retry writes to MongoDB (a shared insert, the clips' guarded writes),
decides what its ledger reservations hold, and starts the clips' chains. A request
is cancelled when its client goes away or the API shuts down; cut there, the writes
may land with nobody to release what they do not hold (a tenant's clips in flight
counted for ever) or to dispatch what they stored (the clips waiting for their
leases to run out). So the work runs in a task of its own, which the request waits
for through :func:`asyncio.shield`, and the API's shutdown waits for it before it
closes its connections (:meth:`OutlivingWork.drain`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from reelflow_common.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class OutlivingWork:
    """The tasks of work whose requests may be gone (the event loop keeps only weak
    references to tasks: one nobody holds may be collected before it ends)."""

    def __init__(self) -> None:
        #: each task, and whether its request went away before it ended
        self._tasks: dict[asyncio.Task[Any], bool] = {}

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result, or its error; a cancelled caller leaves it running."""
        task = asyncio.create_task(work)
        self._tasks[task] = False
        task.add_done_callback(self._ended)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task in self._tasks:
                self._tasks[task] = True  # :meth:`_ended` logs its error
            elif not task.cancelled():
                _log_orphaned_error(task)  # it ended in the turn its request was cancelled
            raise

    def _ended(self, task: asyncio.Task[Any]) -> None:
        orphaned = self._tasks.pop(task, False)
        if task.cancelled():
            return
        task.exception()  # retrieved: its request raises it, or it is logged here
        if orphaned:
            _log_orphaned_error(task)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the work still running (at shutdown, before the
        connections it needs close). What is still running then goes on against closing
        connections until the process ends: its writes fail, and a reservation whose
        decision fails is kept (logged as ``request_work_cut``)."""
        if not self._tasks:
            return
        log.info("draining_request_work", tasks=len(self._tasks))
        _done, pending = await asyncio.wait(list(self._tasks), timeout=timeout_s)
        if pending:
            log.warning("request_work_cut", tasks=len(pending))


def _log_orphaned_error(task: asyncio.Task[Any]) -> None:
    error = task.exception()
    if error is not None:
        log.warning("work_failed_after_its_request_went", error=repr(error), exc_info=error)
