"""Routes events to the connections of this replica that watch their project.

It also keeps this replica's queue bound to exactly those projects
(:mod:`reelflow_notifier.bindings`), once the fan-out has a queue: a project's
first watcher binds it, its last one's leaving unbinds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from reelflow_common.messages import Event
from reelflow_notifier.bindings import ProjectBindings


class Listener(Protocol):
    """A connection's side of the hub. Both calls must return at once (nothing awaited)."""

    def deliver(self, events: Sequence[Event]) -> None:
        """Take events of one watched project, in the order published (one or a burst):
        queue them, or write them without waiting."""

    def catch_up(self, project_id: str | None = None) -> None:
        """Events of ``project_id`` (None: of every project it watches) may have been missed
        (the broker connection was lost, a bind came late): recover from the store."""


class Hub:
    """``project_id -> listeners``; one per replica, shared by every connection."""

    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[Listener]] = defaultdict(set)
        #: the fan-out queue's bindings; None while there is no queue (the broker is away)
        self._bindings: ProjectBindings | None = None

    def attach(self, bindings: ProjectBindings | None) -> None:
        """The fan-out's queue (its bindings) from now on; None: it is gone."""
        self._bindings = bindings

    def add(self, project_id: str, listener: Listener) -> None:
        if project_id not in self._watchers and self._bindings is not None:
            self._bindings.want(project_id)
        self._watchers[project_id].add(listener)

    def discard(self, project_id: str, listener: Listener) -> None:
        listeners = self._watchers.get(project_id)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._watchers[project_id]
            if self._bindings is not None:
                self._bindings.drop(project_id)

    async def ready(self, project_id: str) -> None:
        """Once the queue is bound to ``project_id``'s events, or its bind's first attempt
        failed or took ``bindings.WAIT_S`` (the watchers then catch up once it holds); at
        once without a queue (the connections catch up when it comes). Read a watch's
        snapshot after this."""
        if self._bindings is not None:
            await self._bindings.bound(project_id)

    def projects(self) -> list[str]:
        """The projects watched here."""
        return list(self._watchers)

    def watching(self, project_id: str) -> bool:
        """Whether a listener watches ``project_id`` now (the fan-out skips an event if not).

        The fan-out acknowledges an event unread when this is false, which is only
        correct because every watch is keyed by one exact project id, as :meth:`add`
        takes it. A future wildcard or tenant-wide subscription must make this true
        for every project it covers, or its events will be skipped.
        """
        return project_id in self._watchers

    def route(self, events: Sequence[Event]) -> int:
        """Hand ``events``, all of one project, in order, to each listener of it in one call;
        how many listeners there were."""
        listeners = self._watchers.get(events[0].project_id, ())
        for listener in tuple(listeners):
            listener.deliver(events)
        return len(listeners)

    def catch_up(self, project_id: str) -> None:
        """Every listener of ``project_id`` recovers it from the store."""
        for listener in tuple(self._watchers.get(project_id, ())):
            listener.catch_up(project_id)

    def catch_up_all(self) -> None:
        every = {listener for listeners in self._watchers.values() for listener in listeners}
        for listener in every:
            listener.catch_up()

    def watched(self) -> int:
        """Projects with at least one listener."""
        return len(self._watchers)
