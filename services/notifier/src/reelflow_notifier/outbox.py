"""A connection's queue of things to send, bounded: a slow reader gets a snapshot.

Items are kept in arrival order, each tagged with its project. The sender takes
them one at a time; only it reads the store and writes to the socket, so the
order a client sees is the order decided here.

Bounded whatever a client does: at most ``max_backlog`` events, as many
notices, and one pending Start, Snapshot or CatchUp per watched project (each
reads the store when it is sent, so a second one queued behind it would add
nothing). A client that subscribes again and again, or a replica that catches
up again and again, without the client reading, queues nothing more.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from reelflow_common.messages import EVENT_CLASSES, Event
from reelflow_notifier.metrics import WS_BACKLOG_EVENTS, WS_BACKLOG_MAX_EVENTS
from reelflow_notifier.wire import WireMessage


@dataclass(frozen=True)
class Start:
    """A new watch: a snapshot, or the changes after ``after_seq`` when given."""

    after_seq: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """Send the project afresh (the client fell too far behind)."""

    reason: str


@dataclass(frozen=True)
class CatchUp:
    """Events may have been lost on the way: send what the store has after the client's seq."""


@dataclass(frozen=True)
class Notice:
    """A message about no project's sequence (errors, acknowledgements); kept on overflow."""

    message: WireMessage


Item = Event | Start | Snapshot | CatchUp
Entry = tuple[str, Item] | Notice


class Outbox:
    """FIFO of entries holding at most ``max_backlog`` events and as many notices."""

    #: every outbox alive, read by the backlog gauges when they are scraped
    live: weakref.WeakSet[Outbox] = weakref.WeakSet()

    def __init__(self, max_backlog: int) -> None:
        self._entries: deque[Entry] = deque()
        self._events = 0
        self._notices = 0
        #: projects with a Start, Snapshot or CatchUp queued
        self._pending_reads: set[str] = set()
        self._max_backlog = max_backlog
        self._ready = asyncio.Event()
        Outbox.live.add(self)

    @property
    def events(self) -> int:
        """Events queued."""
        return self._events

    def put(self, project_id: str, item: Start | Snapshot | CatchUp) -> None:
        """Queue a read of the store for ``project_id`` (at most one is ever pending).

        A Start replaces whatever the project had queued: the watch starts over.
        """
        if isinstance(item, Start):
            self._drop(project_id)
        elif project_id in self._pending_reads:
            return  # the read already queued happens later, so it sees at least as much
        self._pending_reads.add(project_id)
        self._append((project_id, item))

    def notice(self, message: WireMessage) -> None:
        """Queue ``message``; dropped when the backlog of notices is full.

        Only a client that keeps sending while it does not read fills it: the
        answers it would miss are about its own bad requests.
        """
        if self._notices >= self._max_backlog:
            return
        self._notices += 1
        self._append(Notice(message))

    def put_event(self, event: Event) -> bool:
        """Queue ``event``; False, and nothing queued, when the backlog is full."""
        if self._events >= self._max_backlog:
            return False
        self._events += 1
        self._append((event.project_id, event))
        return True

    def reset(self, project_ids: Iterable[str], *, reason: str) -> None:
        """Drop every queued project item; queue one snapshot per project instead."""
        notices = [entry for entry in self._entries if isinstance(entry, Notice)]
        self._entries = deque(notices)
        self._events = 0
        self._pending_reads.clear()
        for project_id in dict.fromkeys(project_ids):
            self.put(project_id, Snapshot(reason))

    async def get(self) -> Entry:
        while not self._entries:
            self._ready.clear()
            await self._ready.wait()
        entry = self._entries.popleft()
        if isinstance(entry, Notice):
            self._notices -= 1
        elif isinstance(entry[1], EVENT_CLASSES):
            self._events -= 1
        else:
            self._pending_reads.discard(entry[0])
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, project_id: str) -> None:
        """Forget every item queued for ``project_id``."""
        kept: deque[Entry] = deque()
        for entry in self._entries:
            if isinstance(entry, Notice) or entry[0] != project_id:
                kept.append(entry)
            elif isinstance(entry[1], EVENT_CLASSES):
                self._events -= 1
        self._entries = kept
        self._pending_reads.discard(project_id)

    def _append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._ready.set()


WS_BACKLOG_EVENTS.set_function(lambda: sum(outbox.events for outbox in list(Outbox.live)))
WS_BACKLOG_MAX_EVENTS.set_function(
    lambda: max((outbox.events for outbox in list(Outbox.live)), default=0)
)
