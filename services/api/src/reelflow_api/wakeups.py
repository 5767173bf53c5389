"""``?wait=`` without polling: one subscription per api process wakes its local waiters.

Each api replica holds one queue of its own (``<prefix>api.wakeups.<uuid>``, the
name picked once per process, see ``reelflow_common.broker.replica``) bound to
every project's ``project.finished`` only (``PROJECT_FINISHED_BINDING``): the one
event after which a waiting POST has its answer. A delivery wakes the waiters of
that project in this process; a waiter then reads its project once. Between
events a waiter costs one read of its project every ``wait_check_interval_s``
(the safety net below), so MongoDB sees about ``waiters /
wait_check_interval_s`` reads a second (waiters bounded by ``max_waiters``,
see ``middleware.py``), not one per poll of a client.

An event can still be missed: dropped from a full queue, or published while
this replica was reconnecting to RabbitMQ. So a waiter also reads its project
every ``wait_check_interval_s`` (a safety net, seconds apart), and every
waiter reads once after a reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from reelflow_common.broker.replica import HINT_QUEUE_MAX_LENGTH, consuming_replica_queue
from reelflow_common.logging import get_logger
from reelflow_common.messages import parse_event
from reelflow_common.topology import PROJECT_FINISHED_BINDING, Topology

log = get_logger(__name__)


class Wakeups:
    """The waiters of this process, by project; each is an ``asyncio.Event`` set on wake-up."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def watching(self, project_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``project_id`` may have finished, for as long as the block runs."""
        woken = asyncio.Event()
        self._waiters.setdefault(project_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiters[project_id]
            waiters.discard(woken)
            if not waiters:
                del self._waiters[project_id]

    def wake(self, project_id: str) -> int:
        """Wake the waiters of ``project_id``; how many there were."""
        waiters = self._waiters.get(project_id, ())
        for woken in waiters:
            woken.set()
        return len(waiters)

    def wake_all(self) -> None:
        """Wake every waiter: events may have been missed."""
        for project_id in list(self._waiters):
            self.wake(project_id)

    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())


@asynccontextmanager
async def subscribed(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    topology: Topology,
    wakeups: Wakeups,
    *,
    queue_name: str,
    max_length: int = HINT_QUEUE_MAX_LENGTH,
) -> AsyncIterator[str]:
    """Feed ``project.finished`` events to ``wakeups`` until exit; yields the queue's name.

    ``queue_name`` is picked once by the caller (``topology.wakeups_queue``): a retry
    after a failure declares the same queue again rather than another one.
    """

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        try:
            event = parse_event(incoming.type, incoming.body)
        except ValidationError as exc:
            log.warning(
                "wakeup_event_invalid", message_type=incoming.type, errors=exc.error_count()
            )
            return
        if event is not None:
            wakeups.wake(event.project_id)

    async def on_reconnect(_connection: AbstractRobustConnection | None, /) -> None:
        wakeups.wake_all()

    async with consuming_replica_queue(
        channel,
        queue_name,
        on_message,
        exchange=topology.events_exchange,
        binding_keys=[PROJECT_FINISHED_BINDING],
        max_length=max_length,
    ) as name:
        connection.reconnect_callbacks.add(on_reconnect)
        try:
            yield name
        finally:
            connection.reconnect_callbacks.discard(on_reconnect)
