"""One watched project of one connection: which ``seq`` its client has, and what to send next."""

from __future__ import annotations

from collections.abc import Sequence

from reelflow_common.messages import Event
from reelflow_common.storage import VideoLinks
from reelflow_common.store import ProjectStore
from reelflow_notifier.metrics import WS_EVENTS_TOTAL, WS_SNAPSHOTS_TOTAL
from reelflow_notifier.outbox import CatchUp, Item, Snapshot, Start
from reelflow_notifier.replays import Replays
from reelflow_notifier.wire import encode, event_text, snapshot_message

#: counted once per event and watcher: the labelled child looked up once
_SENT = WS_EVENTS_TOTAL.labels(outcome="sent")


class ProjectGone(Exception):
    """The project no longer exists for this tenant."""


class Feed:
    """Turns queued items into JSON texts so that the client sees every ``seq`` once, in order.

    Duplicates (services re-publish after a crash) are dropped; a gap (an event
    lost or still on its way) is filled from the store's event log, or by a
    snapshot when the log no longer reaches back that far.
    """

    def __init__(
        self,
        project_id: str,
        *,
        tenant_id: str,
        projects: ProjectStore,
        replays: Replays,
        links: VideoLinks | None = None,
    ) -> None:
        self.project_id = project_id
        self._links = links
        self._tenant_id = tenant_id
        self._projects = projects
        self._replays = replays
        #: the last ``seq`` the client was sent; None until the watch has started
        self.last_seq: int | None = None

    async def render(self, item: Item) -> list[str]:
        if isinstance(item, Start):
            if item.after_seq is None:
                return await self._snapshot("connect")
            return await self._replay(item.after_seq)
        if isinstance(item, Snapshot):
            return await self._snapshot(item.reason)
        if self.last_seq is None:
            # Queued for an earlier watch of the same project; this watch's Start is still ahead.
            return []
        if isinstance(item, CatchUp):
            return await self._replay(self.last_seq)
        return await self._event(item, self.last_seq)

    def next_texts(self, events: Sequence[Event]) -> tuple[str, ...] | None:
        """The events' texts when they are, in order, the next ``seq`` values the client needs;
        else None, and nothing changes.

        None leaves the events to :meth:`render` (a duplicate, a gap, a watch
        whose snapshot is not sent yet), which may read the store.
        """
        if self.last_seq is None:
            return None
        seq = self.last_seq
        for event in events:
            seq += 1
            if event.seq != seq:
                return None
        self.last_seq = seq
        _SENT.inc(len(events))
        return tuple(event_text(event) for event in events)

    async def _event(self, event: Event, last_seq: int) -> list[str]:
        if event.seq <= last_seq:
            WS_EVENTS_TOTAL.labels(outcome="duplicate").inc()
            return []
        if event.seq == last_seq + 1:
            self.last_seq = event.seq
            _SENT.inc()
            return [event_text(event)]
        messages = await self._replay(last_seq, seen_seq=event.seq)
        if self.last_seq is not None and event.seq > self.last_seq:
            # The store is written before an event is published, so this is not expected;
            # should it happen, a change shown is better than a change hidden.
            self.last_seq = event.seq
            messages.append(event_text(event))
        return messages

    async def _replay(self, after_seq: int, *, seen_seq: int | None = None) -> list[str]:
        events = await self._replays.events_after(self.project_id, after_seq, seen_seq=seen_seq)
        if events is None:
            return await self._snapshot("not_replayable")
        last_seq = after_seq if self.last_seq is None else max(self.last_seq, after_seq)
        messages: list[str] = []
        for event in events:
            if event.seq > last_seq:
                messages.append(event_text(event))
                last_seq = event.seq
        self.last_seq = last_seq
        WS_EVENTS_TOTAL.labels(outcome="replayed").inc(len(messages))
        return messages

    async def _snapshot(self, reason: str) -> list[str]:
        project = await self._projects.get(self.project_id, tenant_id=self._tenant_id)
        if project is None:
            raise ProjectGone(self.project_id)
        self.last_seq = project.seq
        WS_SNAPSHOTS_TOTAL.labels(reason=reason).inc()
        return [encode(snapshot_message(project, links=self._links))]
