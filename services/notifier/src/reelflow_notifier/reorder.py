"""A project's events put back in ``seq`` order before they are routed, when they come out of it.

Every writer stores a change, taking its ``seq``, and then publishes its
event; writers that change one project at once publish in the order their
publishes complete, not in the order of their ``seq``. The poller checks a
project's clips together, so their progress comes in bursts of up to one
event per clip, and in the benchmark's bursts one event in twelve came before
the one before it (half the bursts had one), by up to some tens of
milliseconds. Routed as it
came, an event ahead of its turn is a gap to every watcher: each one fills it
from the event log through its sender task (the slow path, one message and
one task wakeup at a time), and the rest of the burst queues behind it there,
so one burst to 1,000 watchers took the notifier seconds of CPU.

So the router holds an event that comes ahead of the next ``seq`` it expects
of its project, for at most :data:`HOLD_S` (from the first event of the
project held), until the ones before it come, and then routes them together,
in order. At most :data:`MAX_HELD` events are held in all: held events are
acknowledged (the broker must go on delivering, or what they wait for would
never come), so the fan-out's prefetch does not bound them. Nothing here can
lose or repeat an event a watcher needs, whatever it decides: an event is
routed once, now or when released; a watcher still drops a duplicate and
fills a gap from the event log, as for any event. Two are not routed: a
second copy of a held ``seq`` (a duplicate), and what is held of a project
forgotten because nobody here watches it (a later watch's snapshot, read
after it registered, holds the change). A wrong guess costs only time: a
gap that is real (an event lost between a writer's store and its publish)
delays the events after it by :data:`HOLD_S` before the watchers fill it.

What the router expects of a project is learned from the events it routes;
a project not seen before, or forgotten (:meth:`Reorder.forget`: its events
were skipped, nobody here watched it), starts from the first event that
comes. A duplicate (``seq`` already passed) goes on at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from reelflow_common.messages import Event

#: the longest an event waits for the ones before it
HOLD_S = 0.2
#: events held in all past which the oldest hold's go on (gaps that will not fill soon)
MAX_HELD = 1024
#: projects whose next ``seq`` is remembered (the least recently routed are forgotten)
MAX_PROJECTS = 10_000

#: what is held and routed: an event, with whatever the router routes it with
Item = TypeVar("Item")


class Reorder(Generic[Item]):
    """Per project, the next ``seq`` expected and the items held ahead of it."""

    def __init__(
        self,
        event_of: Callable[[Item], Event],
        *,
        hold_s: float = HOLD_S,
        max_held: int = MAX_HELD,
        max_projects: int = MAX_PROJECTS,
    ) -> None:
        self._event_of = event_of
        self.hold_s = hold_s
        self._max_held = max_held
        self._max_projects = max_projects
        self._expected: OrderedDict[str, int] = OrderedDict()
        self._held: dict[str, dict[int, Item]] = {}
        self._held_count = 0
        #: when each project's hold started (the loop's clock); its items go on by then
        self._since: dict[str, float] = {}

    def arrange(self, item: Item, now: float) -> list[Item]:
        """The items that may be routed now, in order, once ``item`` has come."""
        event = self._event_of(item)
        project_id, seq = event.project_id, event.seq
        expected = self._expected.get(project_id)
        if expected is None or seq < expected:  # the first seen, or a duplicate: as it comes
            if expected is None:
                self._expect(project_id, seq + 1)
            return [item]
        if seq > expected:
            return self._hold(project_id, seq, item, now)
        return self._with_those_it_frees(project_id, item)

    def _hold(self, project_id: str, seq: int, item: Item, now: float) -> list[Item]:
        held = self._held.setdefault(project_id, {})
        if seq not in held:  # a second copy of a held event would be a duplicate
            held[seq] = item
            self._held_count += 1
        self._since.setdefault(project_id, now)
        if self._held_count <= self._max_held:
            return []
        oldest = min(self._since, key=self._since.__getitem__)
        return self._release(oldest)

    def _with_those_it_frees(self, project_id: str, item: Item) -> list[Item]:
        """``item``, the next expected, and the held items that follow it without a gap."""
        ready = [item]
        expected = self._event_of(item).seq + 1
        held = self._held.get(project_id)
        if held is not None:
            while expected in held:
                ready.append(held.pop(expected))
                self._held_count -= 1
                expected += 1
            if not held:  # else what is left waits for another gap, to the same deadline
                del self._held[project_id], self._since[project_id]
        self._expect(project_id, expected)
        return ready

    def next_release(self) -> float | None:
        """When the earliest hold ends; None: nothing is held."""
        return min(self._since.values()) + self.hold_s if self._since else None

    def overdue(self, now: float) -> list[Item]:
        """The items of every hold that has ended, each project's in order, gaps left."""
        ended = [p for p, since in self._since.items() if now >= since + self.hold_s]
        return [item for project_id in ended for item in self._release(project_id)]

    def reset(self) -> list[Item]:
        """Every item held, each project's in order, and nothing expected any more: events
        were lost (an overflow, a broker reconnect), and the watchers catch up from the log."""
        items = [item for project_id in list(self._held) for item in self._release(project_id)]
        self._expected.clear()
        return items

    def forget(self, project_id: str) -> None:
        """Nothing is expected of ``project_id`` any more (its events are not routed here)."""
        self._expected.pop(project_id, None)
        self._held_count -= len(self._held.pop(project_id, {}))
        self._since.pop(project_id, None)

    def _release(self, project_id: str) -> list[Item]:
        held = self._held.pop(project_id)
        self._held_count -= len(held)
        del self._since[project_id]
        items = [held[seq] for seq in sorted(held)]
        after = self._event_of(items[-1]).seq + 1
        self._expect(project_id, max(after, self._expected.get(project_id, after)))
        return items

    def _expect(self, project_id: str, seq: int) -> None:
        self._expected[project_id] = seq
        self._expected.move_to_end(project_id)
        if len(self._expected) > self._max_projects:
            # Forgotten: its next event goes on as it comes (what it held, at its deadline).
            self._expected.popitem(last=False)
