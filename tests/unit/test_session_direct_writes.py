"""The hub writes an idle watcher's next event straight to its socket; anything else is queued.

A real :class:`Session` runs with fakes at its edges: a frame writer and a
WebSocket that both hand what they write to one client, which records each
message and which way it came ("direct" from the hub, "sent" by the session's
sender task), and a project store holding the project's ``seq`` and event log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from opentelemetry import context as otel_context
from starlette.websockets import WebSocket

from reelflow_common.domain import Counts, ProjectStatus
from reelflow_common.messages import ClipUpdated, Event
from reelflow_common.store import Project, ProjectStore
from reelflow_common.tracing import extract
from reelflow_notifier.frames import FRAME_WRITER
from reelflow_notifier.hub import Hub
from reelflow_notifier.replays import Replays
from reelflow_notifier.session import Session
from reelflow_notifier.wire import error_message
from tests.builders import clip_updated
from tests.waiting import DEADLINE_S, eventually

PROJECT = "p1"
TENANT = "t1"
#: the trace context of a request whose trace is being recorded
SAMPLED = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


class Client:
    """What the client receives, in order: ``(way, message)``, a message as ``type@seq``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []

    def arrive(self, way: str, text: str) -> None:
        message = json.loads(text)
        if message["type"] == "error":
            self.received.append((way, f"error:{message['message']}"))
        else:
            self.received.append((way, f"{message['type']}@{message['seq']}"))

    def seen(self) -> list[str]:
        return [message for _way, message in self.received]


class Frames:
    """Stands in for the connection's FrameWriter: ready unless paused; can fail once."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.paused = False
        self.fail_next = False
        self.writes = 0

    def ready(self) -> bool:
        return not self.paused

    def write_texts(self, texts: tuple[str, ...]) -> None:
        self.writes += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the transport is closed")
        for text in texts:
            self._client.arrive("direct", text)


class Socket:
    """Stands in for Starlette's WebSocket; ``gate`` cleared holds the sender mid-send."""

    def __init__(self, client: Client, frames: Frames) -> None:
        self.scope: dict[str, Any] = {"extensions": {FRAME_WRITER: frames}}
        self._client = client
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = False
        self.closed: tuple[int, str] | None = None
        self._left = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.held = not self.gate.is_set()
        await self.gate.wait()
        self.held = False
        self._client.arrive("sent", text)

    async def receive(self) -> dict[str, Any]:
        await self._left.wait()
        return {"type": "websocket.disconnect"}

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def leave(self) -> None:
        self._left.set()


class Store:
    """The project's two reads the notifier makes: the project (its ``seq``) and its event log."""

    def __init__(self) -> None:
        self.log: list[Event] = []

    @property
    def seq(self) -> int:
        return self.log[-1].seq if self.log else 0

    async def get(self, project_id: str, *, tenant_id: str | None = None) -> Project | None:
        now = datetime.now(UTC)
        return Project(
            id=project_id,
            tenant_id=TENANT,
            title="t",
            model="m",
            status=ProjectStatus.GENERATING,
            seq=self.seq,
            counts=Counts(total_clips=1, completed=0, pending=1, failed=0),
            clips=[],
            created_at=now,
            updated_at=now,
        )

    async def events_after(self, project_id: str, after_seq: int) -> list[Event] | None:
        return [event for event in self.log if event.seq > after_seq]


@dataclass
class Connection:
    session: Session
    hub: Hub
    store: Store
    client: Client
    frames: Frames
    socket: Socket

    def change(self, seq: int) -> ClipUpdated:
        """The project's change ``seq``, stored as the services store it: before it is published."""
        event = clip_updated(seq, project_id=PROJECT, tenant_id=TENANT)
        self.store.log.append(event)
        return event

    def publish(self, *seqs: int) -> None:
        """The changes ``seqs``, routed together (one event, or a burst)."""
        self.hub.route([self.change(seq) for seq in seqs])

    async def watch(self) -> None:
        """Watch the project and wait for its snapshot: the sender is idle again."""
        self.session.watch(PROJECT)
        await eventually(
            lambda: self.client.seen() == [f"snapshot@{self.store.seq}"], "the snapshot"
        )

    def queued(self) -> int:
        return len(self.session._outbox)

    async def everything_sent(self) -> list[str]:
        """What the client saw once all queued before now is sent (a notice marks the end)."""
        self.session.notice(error_message("end"))
        await eventually(lambda: "error:end" in self.client.seen(), "the end notice")
        return self.client.seen()[:-1]


@asynccontextmanager
async def connected() -> AsyncIterator[Connection]:
    client = Client()
    frames = Frames(client)
    socket = Socket(client, frames)
    store = Store()
    hub = Hub()
    session = Session(
        cast("WebSocket", socket),
        tenant_id=TENANT,
        projects=cast("ProjectStore", store),
        replays=Replays(cast("ProjectStore", store)),
        hub=hub,
        max_backlog=16,
        close_when_gone=True,
    )
    serving = asyncio.create_task(session.serve())
    try:
        yield Connection(session, hub, store, client, frames, socket)
    finally:
        socket.leave()
        await asyncio.wait_for(serving, DEADLINE_S)


async def test_an_idle_watcher_gets_each_next_event_written_at_once_and_only_once() -> None:
    async with connected() as connection:
        await connection.watch()

        for seq in (1, 2, 3):
            connection.publish(seq)

        # Written while routing, nothing awaited, nothing left for the sender.
        assert connection.client.received == [
            ("sent", "snapshot@0"),
            ("direct", "clip.updated@1"),
            ("direct", "clip.updated@2"),
            ("direct", "clip.updated@3"),
        ]
        assert connection.queued() == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
            "clip.updated@3",
        ]


async def test_an_idle_watcher_gets_a_burst_in_one_write_in_order() -> None:
    async with connected() as connection:
        await connection.watch()

        connection.publish(1, 2, 3)
        connection.publish(4)

        assert connection.frames.writes == 2
        assert connection.queued() == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
            "clip.updated@3",
            "clip.updated@4",
        ]


async def test_a_burst_after_a_gap_is_sent_after_the_events_read_from_the_log() -> None:
    async with connected() as connection:
        await connection.watch()

        connection.change(1)  # stored; its event is lost on the way
        connection.publish(2, 3)

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
            "clip.updated@3",
        ]


async def test_events_wait_for_the_message_the_sender_is_sending() -> None:
    async with connected() as connection:
        connection.socket.gate.clear()
        connection.session.watch(PROJECT)
        await eventually(lambda: connection.socket.held, "the sender sending the snapshot")

        connection.publish(1)
        connection.publish(2)

        assert connection.frames.writes == 0
        assert connection.queued() == 2
        connection.socket.gate.set()
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
        ]
        assert {way for way, _message in connection.client.received} == {"sent"}

        connection.publish(3)  # idle again
        assert connection.client.received[-1] == ("direct", "clip.updated@3")


async def test_an_event_stays_behind_what_is_queued_before_it() -> None:
    async with connected() as connection:
        await connection.watch()

        connection.session.notice(error_message("first"))
        connection.publish(1)

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "error:first",
            "clip.updated@1",
        ]


async def test_events_before_the_snapshot_is_sent_are_covered_by_it() -> None:
    async with connected() as connection:
        connection.session.watch(PROJECT)
        connection.publish(1)  # before the sender has read the snapshot

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == ["snapshot@1"]

        connection.publish(2)
        assert connection.client.received[-1] == ("direct", "clip.updated@2")


async def test_a_paused_transport_leaves_the_events_to_the_sender_in_order() -> None:
    async with connected() as connection:
        await connection.watch()
        connection.frames.paused = True

        connection.publish(1)
        connection.publish(2)

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
        ]
        connection.frames.paused = False
        connection.publish(3)
        assert connection.client.received[-1] == ("direct", "clip.updated@3")


async def test_a_traced_event_is_sent_by_the_sender_for_its_push_span() -> None:
    async with connected() as connection:
        await connection.watch()

        token = otel_context.attach(extract(SAMPLED))
        try:
            connection.publish(1)
        finally:
            otel_context.detach(token)
        connection.publish(2)  # untraced, but behind the traced one

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
        ]


async def test_an_event_after_a_gap_is_sent_after_the_events_read_from_the_log() -> None:
    async with connected() as connection:
        await connection.watch()

        connection.change(1)  # stored; its event is lost on the way
        second = connection.change(2)
        connection.hub.route([second])
        connection.hub.route([second])  # published again

        assert connection.frames.writes == 0
        assert await connection.everything_sent() == [
            "snapshot@0",
            "clip.updated@1",
            "clip.updated@2",
        ]


async def test_no_direct_write_once_the_connection_is_ending() -> None:
    async with connected() as connection:
        await connection.watch()

        connection.session.end(1001, "going away")
        connection.publish(1)

        assert connection.frames.writes == 0
        await eventually(lambda: connection.socket.closed is not None, "the close")
        assert connection.socket.closed == (1001, "going away")
        # The sender may still have sent the event before it was stopped; nothing else wrote.
        assert connection.client.seen() in (["snapshot@0"], ["snapshot@0", "clip.updated@1"])


async def test_a_failed_direct_write_ends_direct_writes_and_a_snapshot_covers_the_event() -> None:
    async with connected() as connection:
        await connection.watch()
        connection.frames.fail_next = True

        connection.publish(1)  # the hub goes on: the session swallowed the failure
        await eventually(lambda: "snapshot@1" in connection.client.seen(), "a fresh snapshot")
        connection.publish(2)
        connection.publish(3)

        assert connection.frames.writes == 1
        assert await connection.everything_sent() == [
            "snapshot@0",
            "snapshot@1",
            "clip.updated@2",
            "clip.updated@3",
        ]
        assert [way for way, _message in connection.client.received[1:]] == ["sent"] * 4
