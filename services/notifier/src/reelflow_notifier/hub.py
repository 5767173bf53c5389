"""Routes each event to the connections of this replica that watch its project."""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from reelflow_common.messages import Event


class Listener(Protocol):
    """A connection's side of the hub. Both calls must return at once (nothing awaited)."""

    def deliver(self, event: Event) -> None:
        """Take one event of a watched project: queue it, or write it without waiting."""

    def catch_up(self) -> None:
        """Events may have been missed (the broker connection was lost): recover from the store."""


class Hub:
    """``project_id -> listeners``; one per replica, shared by every connection."""

    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[Listener]] = defaultdict(set)

    def add(self, project_id: str, listener: Listener) -> None:
        self._watchers[project_id].add(listener)

    def discard(self, project_id: str, listener: Listener) -> None:
        listeners = self._watchers.get(project_id)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._watchers[project_id]

    def watching(self, project_id: str) -> bool:
        """Whether a listener watches ``project_id`` now (the fan-out skips an event if not).

        The fan-out acknowledges an event unread when this is false, which is only
        correct because every watch is keyed by one exact project id, as :meth:`add`
        takes it. A future wildcard or tenant-wide subscription must make this true
        for every project it covers, or its events will be skipped.
        """
        return project_id in self._watchers

    def route(self, event: Event) -> int:
        """Hand ``event`` to every listener of its project; how many there were."""
        listeners = self._watchers.get(event.project_id, ())
        for listener in tuple(listeners):
            listener.deliver(event)
        return len(listeners)

    def catch_up_all(self) -> None:
        every = {listener for listeners in self._watchers.values() for listener in listeners}
        for listener in every:
            listener.catch_up()

    def watched(self) -> int:
        """Projects with at least one listener."""
        return len(self._watchers)
