"""Gap fills of many connections of one project share one read of its event log.

When an event arrives out of order (two writers published in the other order),
every watcher of the project sees the same gap at the same moment and fills it
from the store. With 1,000 watchers that was 1,000 reads of the same event log
at once: the database fell behind, reads passed their deadline and the
connections closed with 1011. Now the watchers that need the events after the
same ``seq`` share one read.

Sharing must not hide an event. A watcher fills a gap it saw on event ``E``;
``E`` was published after its write, and writes take ``seq`` in order, so any
read *started after some watcher received an event with seq >= E.seq* holds
every event up to ``E``. A read is shared only with watchers whose triggering
event is no newer than the one that started it; catch-ups and reconnects,
which have no triggering event, read on their own.
"""

from __future__ import annotations

import asyncio

from reelflow_common.messages import Event
from reelflow_common.store import ProjectStore

Replay = list[Event] | None


class Replays:
    """``events_after`` of the store, with concurrent gap fills of one project shared."""

    def __init__(self, projects: ProjectStore) -> None:
        self._projects = projects
        #: (project, after_seq) -> (the seq that started the read, the read)
        self._reading: dict[tuple[str, int], tuple[int, asyncio.Future[Replay]]] = {}
        #: reads joined instead of made (for tests and metrics)
        self.shared = 0

    async def events_after(
        self, project_id: str, after_seq: int, *, seen_seq: int | None = None
    ) -> Replay:
        """The project's events after ``after_seq`` (None: no longer replayable).

        ``seen_seq`` is the seq of the event that revealed the gap, if any: the
        read may then be one another watcher started on an event at least as new.
        """
        if seen_seq is None:
            return await self._projects.events_after(project_id, after_seq)
        key = (project_id, after_seq)
        reading = self._reading.get(key)
        if reading is not None and reading[0] >= seen_seq:
            self.shared += 1
            return await asyncio.shield(reading[1])
        read = asyncio.ensure_future(self._projects.events_after(project_id, after_seq))
        self._reading[key] = (seen_seq, read)

        def forget(done: asyncio.Future[Replay]) -> None:
            if self._reading.get(key, (0, None))[1] is done:
                del self._reading[key]
            if not done.cancelled():
                done.exception()  # retrieved: each waiter got it, or none is left to

        read.add_done_callback(forget)
        # Shielded: a watcher that leaves mid-read does not cancel the others' read.
        return await asyncio.shield(read)
