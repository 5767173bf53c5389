"""Several Runware tasks in one HTTP request, for callers that ask one task at a time.

Each handler submits or checks one task. :class:`Batches` holds those tasks for up
to ``window_s`` after the first of them (or until ``batch_size`` are waiting, or,
with ``quiet_s``, until none has joined for that long) and sends them together;
each caller gets its own task's outcome. Runware's request
body is an array of tasks, each processed on its own (docs/RUNWARE.md §1.3, §1.4):

- :class:`SubmitBatcher` shares requests between ``videoInference`` submits,
  on by default (the submitter's ``submit_batch_size``, ``submit_batch_window_s``,
  ``submit_batch_quiet_s``);
- :class:`GetResponseBatcher` between ``getResponse`` checks. Whether Runware
  answers several ``getResponse`` tasks in one request is unconfirmed
  (docs/RUNWARE.md §3.3), so that is off by default: with ``batch_size`` 1
  every call goes straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from reelflow_common.runware.errors import RunwareError, not_mentioned
from reelflow_common.runware.models import SubmitResult, TaskState, VideoRequest

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class TaskChecker(Protocol):
    """Where one task stands: :class:`RunwareClient` itself, or a :class:`GetResponseBatcher`."""

    async def get_response(self, task_uuid: str) -> TaskState: ...


class TaskPoller(Protocol):
    """What :class:`GetResponseBatcher` needs of
    :class:`~reelflow_common.runware.client.RunwareClient`."""

    async def get_response(self, task_uuid: str) -> TaskState: ...

    async def get_responses(
        self, task_uuids: Iterable[str]
    ) -> dict[str, TaskState | RunwareError]: ...


class TaskSubmitter(Protocol):
    """What :class:`SubmitBatcher` needs of
    :class:`~reelflow_common.runware.client.RunwareClient`."""

    async def submit_video(self, request: VideoRequest) -> SubmitResult: ...

    async def submit_videos(
        self, requests: Sequence[VideoRequest]
    ) -> dict[str, SubmitResult | RunwareError]: ...


_Waiter = tuple[str, Item, "asyncio.Future[Outcome]"]


class Batches(Generic[Item, Outcome]):
    """Tasks asked for one at a time, sent ``batch_size`` at most per request.

    ``send`` takes the tasks of one request and answers each task UUID with its
    outcome or the error Runware gave for it. A request goes out when
    ``batch_size`` tasks wait, or ``window_s`` after the first of them (0: once
    the event loop has run what is ready now, so the handlers woken together
    share it). With ``quiet_s``, it also goes once no task has joined for
    ``quiet_s``: tasks that come in a burst still share it, and the last of a
    burst does not wait out the window for others that are not coming.
    """

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Mapping[str, Outcome | RunwareError]]],
        *,
        batch_size: int,
        window_s: float,
        quiet_s: float | None = None,
    ) -> None:
        if batch_size < 1 or window_s < 0 or (quiet_s is not None and quiet_s < 0):
            raise ValueError("batch_size must be at least 1, and window_s and quiet_s not negative")
        self._send_tasks = send
        self._batch_size = batch_size
        self._window_s = window_s
        # A gap as long as the window never ends a batch first: no timer for it.
        self._quiet_s = None if quiet_s is None or quiet_s >= window_s else quiet_s
        self._waiting: list[_Waiter[Item, Outcome]] = []
        #: the window, from the first task waiting
        self._timer: asyncio.TimerHandle | None = None
        #: the quiet gap, from the last task that joined
        self._quiet: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def ask(self, task_uuid: str, task: Item) -> Outcome:
        """The outcome of ``task``; raises the :class:`RunwareError` Runware gave for it."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((task_uuid, task, answer))
        if len(self._waiting) >= self._batch_size:
            self._send_waiting()
            return await answer
        if self._timer is None:
            self._timer = loop.call_later(self._window_s, self._send_waiting)
        if self._quiet_s is not None:
            if self._quiet is not None:
                self._quiet.cancel()
            self._quiet = loop.call_later(self._quiet_s, self._send_waiting)
        return await answer

    async def aclose(self) -> None:
        """Send what is waiting now and wait for every request in flight."""
        self._send_waiting()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send_waiting(self) -> None:
        for timer in (self._timer, self._quiet):
            if timer is not None:
                timer.cancel()
        self._timer = self._quiet = None
        while self._waiting:
            batch = self._waiting[: self._batch_size]
            self._waiting = self._waiting[self._batch_size :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Waiter[Item, Outcome]]) -> None:
        # A caller that gave up (cancelled) needs no answer; nobody left, no request.
        live = [waiter for waiter in batch if not waiter[2].done()]
        if not live:
            return
        try:
            outcomes = await self._send_tasks([task for _, task, _ in live])
        except asyncio.CancelledError:
            for _, _, answer in live:
                answer.cancel()
            raise
        except Exception as exc:
            for _, _, answer in live:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for task_uuid, _, answer in live:
            if answer.done():
                continue
            outcome = outcomes.get(task_uuid) or not_mentioned(task_uuid)
            if isinstance(outcome, RunwareError):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)


class GetResponseBatcher:
    """``get_response`` with :class:`RunwareClient`'s contract, sharing HTTP requests.

    Build it with the client's own ``runware_poll_batch_size``: the client splits a
    longer list into requests of that size.
    """

    def __init__(self, client: TaskPoller, *, batch_size: int, window_s: float) -> None:
        self._client = client
        self._batch_size = batch_size
        self._batches: Batches[str, TaskState] = Batches(
            client.get_responses, batch_size=batch_size, window_s=window_s
        )

    async def get_response(self, task_uuid: str) -> TaskState:
        """Where one task stands; raises what :meth:`RunwareClient.get_response` raises."""
        if self._batch_size == 1:
            return await self._client.get_response(task_uuid)
        return await self._batches.ask(task_uuid, task_uuid)

    async def aclose(self) -> None:
        """Send what is waiting now and wait for every request in flight."""
        await self._batches.aclose()


class SubmitBatcher:
    """``submit_video`` with :class:`RunwareClient`'s contract, sharing HTTP requests.

    For a chain's first submit: a retry goes alone (``SubmitHandler``), so an answer
    that left its task unsettled in a shared request (``missingResult``) is followed
    by one that can only be about it.
    """

    def __init__(
        self,
        client: TaskSubmitter,
        *,
        batch_size: int,
        window_s: float,
        quiet_s: float | None = None,
    ) -> None:
        self._client = client
        self._batch_size = batch_size
        self._batches: Batches[VideoRequest, SubmitResult] = Batches(
            client.submit_videos, batch_size=batch_size, window_s=window_s, quiet_s=quiet_s
        )

    async def submit_video(self, request: VideoRequest) -> SubmitResult:
        """Submit one task; raises what :meth:`RunwareClient.submit_video` raises."""
        if self._batch_size == 1:
            return await self._client.submit_video(request)
        return await self._batches.ask(request.task_uuid, request)

    async def aclose(self) -> None:
        """Send what is waiting now and wait for every request in flight."""
        await self._batches.aclose()
