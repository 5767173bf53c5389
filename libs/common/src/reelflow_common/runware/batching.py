"""Several ``getResponse`` checks in one HTTP request, for callers that ask one at a time.

Each CheckClip handler asks about one task. :class:`GetResponseBatcher` holds
those questions for up to ``window_s`` after the first of them (or until
``batch_size`` are waiting) and sends them together through
:meth:`RunwareClient.get_responses`. Whether Runware answers several
``getResponse`` tasks in one request is unconfirmed (docs/RUNWARE.md §3.3), so
batching is off by default: with ``batch_size`` 1 every call goes straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from reelflow_common.runware.errors import ErrorCategory, RunwareError, RunwareTaskError
from reelflow_common.runware.models import TaskState


class TaskChecker(Protocol):
    """Where one task stands: :class:`RunwareClient` itself, or a :class:`GetResponseBatcher`."""

    async def get_response(self, task_uuid: str) -> TaskState: ...


class TaskPoller(Protocol):
    """What the batcher needs of :class:`~reelflow_common.runware.client.RunwareClient`."""

    async def get_response(self, task_uuid: str) -> TaskState: ...

    async def get_responses(
        self, task_uuids: Iterable[str]
    ) -> dict[str, TaskState | RunwareError]: ...


_Waiter = tuple[str, "asyncio.Future[TaskState]"]


class GetResponseBatcher:
    """``get_response`` with :class:`RunwareClient`'s contract, sharing HTTP requests.

    Build it with the client's own ``runware_poll_batch_size``: the client splits a
    longer list into requests of that size.
    """

    def __init__(self, client: TaskPoller, *, batch_size: int, window_s: float) -> None:
        if batch_size < 1 or window_s < 0:
            raise ValueError("batch_size must be at least 1 and window_s not negative")
        self._client = client
        self._batch_size = batch_size
        self._window_s = window_s
        self._waiting: list[_Waiter] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def get_response(self, task_uuid: str) -> TaskState:
        """Where one task stands; raises what :meth:`RunwareClient.get_response` raises."""
        if self._batch_size == 1:
            return await self._client.get_response(task_uuid)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskState] = loop.create_future()
        self._waiting.append((task_uuid, answer))
        if len(self._waiting) >= self._batch_size:
            self._send_waiting()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._send_waiting)
        return await answer

    async def aclose(self) -> None:
        """Send what is waiting now and wait for every request in flight."""
        self._send_waiting()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch = self._waiting[: self._batch_size]
            self._waiting = self._waiting[self._batch_size :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Waiter]) -> None:
        # A caller that gave up (cancelled) needs no answer; nobody left, no request.
        live = [(task_uuid, answer) for task_uuid, answer in batch if not answer.done()]
        if not live:
            return
        try:
            outcomes = await self._client.get_responses(task_uuid for task_uuid, _ in live)
        except asyncio.CancelledError:
            for _, answer in live:
                answer.cancel()
            raise
        except Exception as exc:
            for _, answer in live:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for task_uuid, answer in live:
            if answer.done():
                continue
            outcome = outcomes.get(task_uuid) or _missing(task_uuid)
            if isinstance(outcome, RunwareError):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)


def _missing(task_uuid: str) -> RunwareError:
    return RunwareTaskError(
        "Runware's answer did not mention the task",
        code="missingResult",
        category=ErrorCategory.SERVER_ERROR,
        task_uuid=task_uuid,
    )
