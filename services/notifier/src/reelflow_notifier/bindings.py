"""This replica's queue is bound to the events of the projects its sockets watch, and no others.

An event's routing key is its type and its project (``clip.updated.<project id>``,
``reelflow_common.topology.event_routing_key``), so a binding
``*.*.<project id>`` per watched project brings a replica its watchers' events
only: a replica's cost follows its sockets, not every tenant's traffic, and
adding replicas spreads the fan-out instead of repeating it.

A project's first watcher on this replica binds it (:meth:`ProjectBindings.want`),
and its snapshot is read only once the binding is in place
(:meth:`ProjectBindings.bound`): an event published after the bind is
delivered, and one published before it was stored before it too, so the
snapshot holds it. The last watcher's leaving unbinds the project after
``fanout_linger_s`` (10 s), so a client that reconnects, or a page that switches back,
does not pay a bind each time. A project's binds and unbinds run one after
the other, in the order they were asked for.

The broker connection can fail in the middle: a bind that fails leaves the
project wanted but unbound, an unbind that fails leaves a binding nobody
wants (aio-pika restores the bindings it made when the connection comes
back). :meth:`ProjectBindings.repair`, run on every reconnect before the
connections catch up from the store, binds the one and unbinds the other.
Until then a socket still gets its snapshot; it catches up after the repair,
as after any outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from aio_pika.abc import AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from reelflow_common.logging import get_logger
from reelflow_common.topology import project_events_binding

log = get_logger(__name__)

#: a bind or unbind that takes longer than this is given up (the broker is away)
_CALL_TIMEOUT_S = 10.0
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError)


class ProjectBindings:
    """The bindings of one queue to ``exchange``, one per project watched here.

    ``on_unbound`` is told of each project unbound: no more of its events will
    come (the router forgets the ``seq`` it expected of it).
    """

    def __init__(
        self,
        queue: AbstractQueue,
        exchange: str,
        *,
        on_unbound: Callable[[str], None],
        linger_s: float,
    ) -> None:
        self._queue = queue
        self._exchange = exchange
        self._on_unbound = on_unbound
        self._linger_s = linger_s
        #: wanted projects, each with its bind if one was asked for (done: bound, or failed)
        self._wanted: dict[str, asyncio.Task[None] | None] = {}
        #: projects bound, as the broker last confirmed
        self._bound: set[str] = set()
        #: projects whose unbind waits out the linger
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        #: each project's last bind or unbind: the next one starts after it
        self._last: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def want(self, project_id: str) -> None:
        """A first watcher of ``project_id`` here: bind it, unless it still is."""
        if self._closed or project_id in self._wanted:
            return
        lingering = self._lingering.pop(project_id, None)
        if lingering is not None:
            lingering.cancel()
            if project_id in self._bound:
                self._wanted[project_id] = None
                return
        self._wanted[project_id] = self._then(project_id, self._bind)

    def drop(self, project_id: str) -> None:
        """The last watcher of ``project_id`` here left: unbind it after the linger."""
        if self._closed or project_id not in self._wanted:
            return
        del self._wanted[project_id]
        self._lingering[project_id] = asyncio.get_running_loop().call_later(
            self._linger_s, self._unbind_now, project_id
        )

    async def bound(self, project_id: str) -> None:
        """Once ``project_id``'s bind is done, failed or not (the module's doc says what
        then); at once if it needs none. Never raises."""
        binding = self._wanted.get(project_id)
        if binding is not None:
            await asyncio.wait([binding])

    def bound_projects(self) -> set[str]:
        """The projects bound now, as the broker last confirmed."""
        return set(self._bound)

    async def want_all(self, project_ids: Iterable[str]) -> None:
        """Bind each of ``project_ids`` (watched before the queue existed); returns once done."""
        wanted = list(project_ids)
        for project_id in wanted:
            self.want(project_id)
        for project_id in wanted:
            await self.bound(project_id)

    async def repair(self) -> None:
        """After a reconnect: bind what is wanted and not bound, unbind what is bound and
        neither wanted nor lingering (what the outage made fail); returns once done."""
        for project_id in set(self._wanted) - self._bound:
            self._wanted[project_id] = self._then(project_id, self._bind)
        for project_id in self._bound - set(self._wanted) - set(self._lingering):
            self._then(project_id, self._unbind)
        pending = list(self._last.values())
        if pending:
            await asyncio.wait(pending)

    def close(self) -> None:
        """Stop: no more binds or unbinds (the queue goes with the connection)."""
        self._closed = True
        for lingering in self._lingering.values():
            lingering.cancel()
        self._lingering.clear()
        for task in list(self._last.values()):
            task.cancel()

    def _unbind_now(self, project_id: str) -> None:
        del self._lingering[project_id]
        self._then(project_id, self._unbind)

    def _then(
        self, project_id: str, operation: Callable[[str], Awaitable[None]]
    ) -> asyncio.Task[None]:
        """Run ``operation`` on ``project_id`` after the project's last one."""
        task = asyncio.create_task(
            self._after(self._last.get(project_id), operation, project_id),
            name=f"fanout binding {project_id}",
        )
        self._last[project_id] = task
        task.add_done_callback(lambda done: self._forget(project_id, done))
        return task

    @staticmethod
    async def _after(
        previous: asyncio.Task[None] | None,
        operation: Callable[[str], Awaitable[None]],
        project_id: str,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await operation(project_id)

    def _forget(self, project_id: str, done: asyncio.Task[None]) -> None:
        if self._last.get(project_id) is done:
            del self._last[project_id]

    async def _bind(self, project_id: str) -> None:
        try:
            await self._queue.bind(
                self._exchange, project_events_binding(project_id), timeout=_CALL_TIMEOUT_S
            )
        except _BROKER_ERRORS as exc:
            log.warning("fanout_bind_failed", project_id=project_id, error=repr(exc))
            return
        self._bound.add(project_id)

    async def _unbind(self, project_id: str) -> None:
        try:
            await self._queue.unbind(
                self._exchange, project_events_binding(project_id), timeout=_CALL_TIMEOUT_S
            )
        except _BROKER_ERRORS as exc:
            log.warning("fanout_unbind_failed", project_id=project_id, error=repr(exc))
            return
        self._bound.discard(project_id)
        self._on_unbound(project_id)
