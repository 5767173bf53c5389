"""One WebSocket connection: the projects it watches, one outbox, one sender.

Messages leave in the order the outbox holds them. The sender task writes
them, one at a time; the hub's :meth:`Session.deliver` writes only the
common case itself, untraced events (one, or a burst routed together) that
are the next ``seq`` values of their project when nothing is queued or being
sent: their shared frames go to the socket at the end of the event loop's
pass (:mod:`reelflow_notifier.frames`), without waking the sender. Neither
awaits between deciding and writing, and the sender only writes what was
queued after a direct write, waking after the frames waiting are written, so
the order is kept.
A client that reads too slowly pauses its transport, its events queue, it
overflows its outbox and is sent a snapshot instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from starlette.websockets import WebSocket, WebSocketDisconnect

from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import EVENT_CLASSES, Event
from reelflow_common.storage import VideoLinks
from reelflow_common.store import ProjectStore
from reelflow_common.tracing import Context, SpanKind, current_context, is_sampled, span
from reelflow_notifier.feed import Feed, ProjectGone
from reelflow_notifier.frames import FRAME_WRITER, FrameWriter
from reelflow_notifier.hub import Hub
from reelflow_notifier.keyslots import KeySlot
from reelflow_notifier.metrics import WS_OVERFLOWS_TOTAL
from reelflow_notifier.outbox import CatchUp, Entry, Notice, Outbox, Start
from reelflow_notifier.replays import Replays
from reelflow_notifier.wire import WireMessage, encode, error_message

#: close codes; 4xxx are reelflow's own (see reelflow_notifier.routes)
CLOSE_NOT_FOUND = 4404
CLOSE_SERVER_ERROR = 1011

TextHandler = Callable[[str], Awaitable[None]]

log = get_logger(__name__)


class Session:
    """The server side of one connection, for one tenant."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        tenant_id: str,
        projects: ProjectStore,
        replays: Replays,
        hub: Hub,
        max_backlog: int,
        close_when_gone: bool,
        links: VideoLinks | None = None,
        key_slot: KeySlot | None = None,
    ) -> None:
        self._websocket = websocket
        #: told of each project this connection starts and stops watching (its key's count)
        self._key_slot = key_slot
        self._tenant_id = tenant_id
        self._projects = projects
        self._replays = replays
        self._links = links
        self._hub = hub
        self._outbox = Outbox(max_backlog)
        self._feeds: dict[str, Feed] = {}
        self._close_when_gone = close_when_gone
        self._sent = 0
        self._ending: tuple[int, str] | None = None
        self._ended = asyncio.Event()
        #: each queued event's trace context (message id -> context), for its push span;
        #: bounded like the outbox, oldest first out
        self._traces: dict[str, Context] = {}
        self._max_traces = max_backlog
        #: writes the next event of a project straight to the socket; None: the server has none
        extensions = websocket.scope.get("extensions") or {}
        self._frames: FrameWriter | None = extensions.get(FRAME_WRITER)
        #: the sender took an entry from the outbox and has not finished sending it
        self._sending = False

    # --- called by the endpoint ------------------------------------------------

    def watch(self, project_id: str, after_seq: int | None = None) -> None:
        """Start sending ``project_id``'s changes (the caller checked that the tenant owns it).

        The listener is registered, and the replica's queue bound to the project's
        events, before the snapshot is read (the sender reads it later,
        :meth:`Hub.ready`; a bind the broker does not confirm in time is followed by
        a catch-up once it holds), so no change can fall between the two; events
        queued meanwhile with ``seq <= snapshot seq`` are dropped by the feed.
        """
        self.unwatch(project_id)
        self._feeds[project_id] = Feed(
            project_id,
            tenant_id=self._tenant_id,
            projects=self._projects,
            replays=self._replays,
            links=self._links,
        )
        self._hub.add(project_id, self)
        if self._key_slot is not None:
            self._key_slot.watched()
        self._outbox.put(project_id, Start(after_seq))

    def unwatch(self, project_id: str) -> None:
        """Stop; items of the project still queued are skipped by the sender."""
        if self._feeds.pop(project_id, None) is not None:
            self._hub.discard(project_id, self)
            if self._key_slot is not None:
                self._key_slot.unwatched()

    def watching(self, project_id: str) -> bool:
        return project_id in self._feeds

    def watch_count(self) -> int:
        return len(self._feeds)

    def notice(self, message: WireMessage) -> None:
        self._outbox.notice(message)

    def end(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` as soon as :meth:`serve` sees it (no I/O here)."""
        if self._ending is None:
            self._ending = (code, reason)
            self._ended.set()

    async def serve(self, on_text: TextHandler | None = None) -> None:
        """Send until the client leaves or the connection fails; client text goes to ``on_text``."""
        started = time.monotonic()
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop(on_text))
        ended = asyncio.create_task(self._ended.wait())
        tasks = (sender, receiver, ended)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done and (exc := receiver.exception()) is not None:
                log.error("ws_receive_failed", exc_info=exc)
                await self._close(CLOSE_SERVER_ERROR, "server error; reconnect with after_seq")
            elif ended in done and self._ending is not None:
                # The sender is stopped first: only one task ever writes to the socket.
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                await self._close(*self._ending)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for project_id in list(self._feeds):
                self.unwatch(project_id)
            log.info(
                "ws_closed", messages_sent=self._sent, seconds=round(time.monotonic() - started, 1)
            )

    # --- called by the hub (nothing awaited) ----------------------------------------

    def deliver(self, events: Sequence[Event]) -> None:
        """Events of one project, in order: written at once when they are the next ``seq`` values
        and nothing is ahead of them, else queued for the sender."""
        feed = self._feeds.get(events[0].project_id)
        if feed is None:
            return
        context = current_context()
        sampled = is_sampled(context)
        if not sampled and self._write_now(feed, events):
            return
        for event in events:
            if not self._outbox.put_event(event):
                WS_OVERFLOWS_TOTAL.inc()
                log.warning("ws_slow_reader", watched=len(self._feeds))
                self._outbox.reset(list(self._feeds), reason="slow_reader")
                self._traces.clear()
                return
            if not sampled:
                continue  # no trace to add a push span to (or none is being recorded)
            self._traces[event.message_id] = context
            while len(self._traces) > self._max_traces:
                del self._traces[next(iter(self._traces))]

    def _write_now(self, feed: Feed, events: Sequence[Event]) -> bool:
        """Write ``events`` now if they are the next ``seq`` values, nothing ahead; whether it did.

        A burst goes as one block of frames (:meth:`FrameWriter.write_texts`). A
        block that cannot be made (the hub must go on to the other watchers) ends
        direct writes on this connection, and each of its projects gets a snapshot,
        which covers whatever these events' ``seq`` values had already been counted for. The
        socket's write comes at the end of the pass: one that fails there aborts the
        connection (``FrameWriter``), and the client reconnects with ``after_seq``.
        Frames dropped there because the connection was closing are counted as sent.
        """
        frames = self._frames
        if frames is None or self._sending or self._outbox or self._ending is not None:
            return False
        try:
            if not frames.ready():
                return False
            texts = feed.next_texts(events)
            if texts is None:
                return False
            frames.write_texts(texts)
        except Exception:
            log.exception("ws_direct_write_failed", watched=len(self._feeds))
            self._frames = None
            self._outbox.reset(list(self._feeds), reason="direct_write_failed")
            return True
        self._sent += len(texts)
        if log.is_enabled_for(logging.DEBUG):
            for event in events:
                self._log_pushed(event, sent=1)
        return True

    def catch_up(self, project_id: str | None = None) -> None:
        for watched in self._feeds if project_id is None else (project_id,):
            if watched in self._feeds:
                self._outbox.put(watched, CatchUp())

    # --- the two tasks -----------------------------------------------------------------

    async def _send_loop(self) -> None:
        try:
            while True:
                entry = await self._outbox.get()
                self._sending = True
                if isinstance(entry, tuple) and isinstance(entry[1], EVENT_CLASSES):
                    await self._push(entry[1])
                else:
                    await self._send(await self._render(entry))
                # Left set if sending failed: the sender is gone, and nothing else may write.
                self._sending = False
        except ProjectGone:
            await self._close(CLOSE_NOT_FOUND, "project not found")
        except (WebSocketDisconnect, OSError):
            return  # the client left while we were writing
        except Exception:
            # Most likely MongoDB is unreachable: the client reconnects with after_seq later.
            log.exception("ws_send_failed")
            await self._close(CLOSE_SERVER_ERROR, "server error; reconnect with after_seq")

    async def _push(self, event: Event) -> None:
        """Send one event (or what it turns into), in the trace of the request behind it.

        Runs once per event and watcher, so the usual case costs least: the next
        ``seq`` of an untraced event is its shared text sent, with no context
        bound (nothing below logs) and no span.
        """
        parent = self._traces.pop(event.message_id, None)
        feed = self._feeds.get(event.project_id)
        if parent is None and feed is not None and (texts := feed.next_texts((event,))) is not None:
            await self._send(list(texts))
            if log.is_enabled_for(logging.DEBUG):
                self._log_pushed(event, sent=1)
            return
        pushing = (
            contextlib.nullcontext()
            if parent is None
            else span(
                f"{event.message_type} push",
                kind=SpanKind.PRODUCER,
                parent=parent,
                attributes={"messaging.system": "websocket", "reelflow.seq": event.seq},
            )
        )
        with (
            bound_context(
                correlation_id=event.correlation_id,
                project_id=event.project_id,
                tenant_id=event.tenant_id,
            ),
            pushing,
        ):
            messages = await self._render((event.project_id, event))
            await self._send(messages)
            self._log_pushed(event, sent=len(messages))

    @staticmethod
    def _log_pushed(event: Event, *, sent: int) -> None:
        # Debug: one line per event and socket, with the request's correlation id.
        log.debug(
            "ws_event_pushed",
            correlation_id=event.correlation_id,
            project_id=event.project_id,
            tenant_id=event.tenant_id,
            seq=event.seq,
            event_type=event.message_type,
            sent=sent,
        )

    async def _send(self, texts: list[str]) -> None:
        for text in texts:
            await self._websocket.send_text(text)
            self._sent += 1

    async def _render(self, entry: Entry) -> list[str]:
        """The JSON texts ``entry`` turns into."""
        if isinstance(entry, Notice):
            return [encode(entry.message)]
        project_id, item = entry
        feed = self._feeds.get(project_id)
        if feed is None:
            return []
        if not isinstance(item, EVENT_CLASSES):
            # What the store says is read once the queue is bound to the project's events.
            await self._hub.ready(project_id)
            if self._feeds.get(project_id) is not feed:
                return []  # unwatched, or watched anew, meanwhile: its own Start follows
        try:
            return await feed.render(item)
        except ProjectGone:
            if self._close_when_gone:
                raise
            self.unwatch(project_id)
            return [encode(error_message("project not found", project_id=project_id))]

    async def _receive_loop(self, on_text: TextHandler | None) -> None:
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and (data := message.get("bytes")) is not None:
                text = bytes(data).decode("utf-8", errors="replace")
            if on_text is not None and text is not None:
                await on_text(text)

    async def _close(self, code: int, reason: str) -> None:
        # Closing twice, or after the client left, raises; either way it is closed.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self._websocket.close(code=code, reason=reason)
