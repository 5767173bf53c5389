"""This replica's queue is bound to the events of the projects its sockets watch, and no others.

An event's routing key is its type and its project (``clip.updated.<project id>``,
``reelflow_common.topology.event_routing_key``), so a binding
``*.*.<project id>`` per watched project brings a replica its watchers' events
only: a replica's cost follows its sockets, not every tenant's traffic.

A project's first watcher on this replica binds it (:meth:`ProjectBindings.want`),
and its snapshot is read once the bind is confirmed (:meth:`ProjectBindings.bound`):
an event published after the bind is delivered, and one published before it was
stored before it too, so the snapshot holds it. The last watcher's leaving
unbinds the project after ``fanout_linger_s`` (10 s), so a client that
reconnects, or a page that switches back, costs no new bind. A project's binds
and unbinds run one after the other, in the order they were asked for.

The sender waits for a bind at most :data:`WAIT_S`, and not at all while the
channel is closed: a socket gets its snapshot without waiting for the broker,
and once the bind holds, the watchers of a project read before it did catch up
from the store (``on_bound_late``), so nothing published meanwhile is missed.
A bind or unbind is never cancelled midway (aiormq closes a channel whose call
is abandoned, and this one consumes the fan-out). One that fails while the
channel is open (a channel error) is tried again after a jittered backoff, for
as long as the project is watched (an unbind: unwatched); one that fails with
the connection waits for it to come back: aio-pika restores the queue and the
bindings it made, then the reconnect callback calls :meth:`ProjectBindings.resume`,
which makes the binds still wanted before every connection catches up (a retry
on a timer could land between the channel's reopening and the queue's
re-declaration, where the broker refuses it and closes the channel again).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from reelflow_common.backoff import Backoff
from reelflow_common.sampledlog import SampledLog
from reelflow_common.topology import project_events_binding

#: the longest a socket's sender waits for its project's bind before reading anyway
WAIT_S = 5.0
#: between two attempts of a bind or unbind that failed with the channel open
RETRY = Backoff(first_s=0.5, cap_s=10.0, jitter=0.5)
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError)


@dataclass(eq=False)
class _Watched:
    """A project watched here, from its first watcher to its last one's leaving."""

    #: done once the first attempt to bind it is over, or the watch ended, or no bind is
    #: needed (it is bound)
    first_attempt: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: what the store says was read before the bind held: catch up once it does
    read_unbound: bool = False

    def attempted(self) -> None:
        if not self.first_attempt.done():
            self.first_attempt.set_result(None)


class ProjectBindings:
    """The bindings of one queue to ``exchange``, one per project watched here.

    ``channel_open`` says whether the queue's channel is open now (a bind then
    has a chance). ``on_bound_late`` is told of a project whose bind held only
    after something of it was read: its watchers must catch up. ``on_unbound`` is
    told of each project unbound: no more of its events will come.
    """

    def __init__(
        self,
        queue: AbstractQueue,
        exchange: str,
        *,
        channel_open: Callable[[], bool],
        on_bound_late: Callable[[str], None],
        on_unbound: Callable[[str], None],
        linger_s: float,
        retry: Backoff = RETRY,
    ) -> None:
        self._queue = queue
        self._exchange = exchange
        self._channel_open = channel_open
        self._on_bound_late = on_bound_late
        self._on_unbound = on_unbound
        self._linger_s = linger_s
        self._retry = retry
        self._watched: dict[str, _Watched] = {}
        #: projects bound, as the broker last confirmed
        self._bound: set[str] = set()
        #: projects whose unbind waits out the linger
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        #: each project's last bind or unbind: the next one starts after it
        self._last: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: how many times the connection came back (:meth:`resume`), and the event of the next
        self._resumes = 0
        self._resumed = asyncio.Event()
        self._closed = False
        # An outage fails every watched project's attempts: a line per kind and 10 s.
        self._failures = SampledLog("fanout_binding_failed", level="warning")

    def want(self, project_id: str) -> None:
        """A first watcher of ``project_id`` here: bind it, unless it still is."""
        if self._closed or project_id in self._watched:
            return
        watched = self._watched[project_id] = _Watched()
        lingering = self._lingering.pop(project_id, None)
        if lingering is not None:
            lingering.cancel()
            # Still bound, and no unbind under way (an earlier linger's may be): nothing to do.
            if project_id in self._bound and project_id not in self._last:
                watched.attempted()
                return
        self._then(project_id, lambda: self._bind(project_id, watched))

    def drop(self, project_id: str) -> None:
        """The last watcher of ``project_id`` here left: unbind it after the linger."""
        watched = self._watched.pop(project_id, None)
        if watched is not None:
            watched.attempted()  # nobody waits for a watch that ended
        if self._closed or watched is None:
            return
        self._lingering[project_id] = asyncio.get_running_loop().call_later(
            self._linger_s, self._unbind_now, project_id
        )

    async def bound(self, project_id: str) -> None:
        """Once the first attempt to bind ``project_id`` is over, whatever came of it, or
        :data:`WAIT_S` has passed; at once while the channel is closed. What is read after
        it and before the bind holds is caught up once it does (the module's doc). Never
        raises."""
        watched = self._watched.get(project_id)
        if watched is None:
            return
        if not watched.first_attempt.done() and self._channel_open():
            await asyncio.wait([watched.first_attempt], timeout=WAIT_S)
        if not watched.first_attempt.done() or project_id not in self._bound:
            watched.read_unbound = True

    def bound_projects(self) -> set[str]:
        """The projects bound now, as the broker last confirmed."""
        return set(self._bound)

    async def want_all(self, project_ids: Iterable[str]) -> None:
        """Bind each of ``project_ids`` (watched before the queue existed); returns once each
        first attempt is over."""
        wanted = list(project_ids)
        for project_id in wanted:
            self.want(project_id)
        # Their snapshots were read before: caught up after. Side by side: one wait in all.
        await asyncio.gather(*(self.bound(project_id) for project_id in wanted))

    async def resume(self) -> None:
        """The connection is back, and aio-pika has restored the queue and the bindings it
        made: bind each project watched and not bound; returns once each was tried (the
        connections catch up after). Calls that failed with the connection go on."""
        wanted = [project for project in self._watched if project not in self._bound]
        results = await asyncio.gather(
            *(self._attempt(self._queue.bind, "bind", project) for project in wanted)
        )
        for project_id, done in zip(wanted, results, strict=True):
            if not done:
                continue
            self._bound.add(project_id)
            if project_id not in self._watched and project_id not in self._lingering:
                # Its watch and its linger ended meanwhile: nothing else will unbind it.
                self._then(project_id, functools.partial(self._unbind, project_id))
        self._resumes += 1
        resumed, self._resumed = self._resumed, asyncio.Event()
        resumed.set()

    def close(self) -> None:
        """Stop: no more binds or unbinds (the queue goes with the connection)."""
        self._closed = True
        for lingering in self._lingering.values():
            lingering.cancel()
        self._lingering.clear()
        self._resumed.set()
        for task in list(self._tasks):
            task.cancel()
        for watched in self._watched.values():
            watched.attempted()

    def _unbind_now(self, project_id: str) -> None:
        del self._lingering[project_id]
        self._then(project_id, lambda: self._unbind(project_id))

    def _then(self, project_id: str, operation: Callable[[], Awaitable[None]]) -> None:
        """Run ``operation`` once the project's last bind or unbind is over."""
        previous = self._last.get(project_id)

        async def in_turn() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await operation()

        task = asyncio.create_task(in_turn(), name=f"fanout binding {project_id}")
        self._last[project_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(project_id, done))

    def _done(self, project_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(project_id) is task:
            del self._last[project_id]

    async def _bind(self, project_id: str, watched: _Watched) -> None:
        """Bind until it holds, while this watch of the project lasts."""
        try:
            attempt = 0
            while self._watched.get(project_id) is watched and project_id not in self._bound:
                resumes = self._resumes
                done = await self._attempt(self._queue.bind, "bind", project_id)
                watched.attempted()
                if done:
                    self._bound.add(project_id)
                    break
                attempt = await self._wait_to_retry(attempt, resumes)
            if project_id in self._bound and watched.read_unbound:
                self._on_bound_late(project_id)
        finally:
            watched.attempted()

    async def _unbind(self, project_id: str) -> None:
        """Unbind until it holds, while the project is neither watched nor lingering again."""
        attempt = 0
        while project_id not in self._watched and project_id not in self._lingering:
            resumes = self._resumes
            if await self._attempt(self._queue.unbind, "unbind", project_id):
                self._bound.discard(project_id)
                self._on_unbound(project_id)
                return
            attempt = await self._wait_to_retry(attempt, resumes)

    async def _wait_to_retry(self, attempt: int, resumes: int) -> int:
        """After a call that failed (started after ``resumes`` returns of the connection): the
        backoff if the channel is open, or the connection came back since; else the
        connection's return (:meth:`resume`). The next attempt's number."""
        if self._channel_open() or self._resumes != resumes:
            await asyncio.sleep(self._retry.delay_s(attempt))
        else:
            await self._resumed.wait()
        return attempt + 1

    async def _attempt(
        self, call: Callable[[str, str], Awaitable[object]], what: str, project_id: str
    ) -> bool:
        """One bind or unbind, never cancelled midway but by :meth:`close`; whether the broker
        confirmed it. None is made while the channel is closed: aio-pika would hold it until
        the connection is back, and then send it before it has re-declared the queue."""
        if not self._channel_open():
            return False
        try:
            await call(self._exchange, project_events_binding(project_id))
        except _BROKER_ERRORS as exc:
            self._failures.emit(what, operation=what, project_id=project_id, error=repr(exc))
            return False
        return True
