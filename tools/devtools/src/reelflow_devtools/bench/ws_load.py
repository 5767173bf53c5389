"""A WebSocket load process: many watchers in a process of their own, driven over stdin/stdout.

``python -m reelflow_devtools.bench.ws_load`` reads one JSON command a line and
answers one JSON line each:

- ``{"op": "connect", "url": …, "count": n, "hot": bool, "concurrency": c, "deflate": bool}``:
  open ``n`` WebSockets to ``url`` (at most ``c`` handshakes at once; offering
  permessage-deflate, as browsers do, unless ``deflate`` is false), each held open
  until ``quit``; a *hot* watcher records when each ``clip.updated`` arrived and
  checks that every ``seq`` follows the one before (gaps and duplicates are counted).
  Answer: ``{"ok": …, "failed": …, "errors": {…}, "seconds": …}``. Then what the
  process holds is frozen out of the garbage collector's passes (:class:`Pauses`).
- ``{"op": "collect", "deadline_s": d}``: wait until every hot watcher has seen
  ``project.finished`` (or the deadline), then answer per change (``seq``) the
  clip's ``completed_at`` and the first and last arrival and how many watchers had it,
  and this process's garbage-collector passes meanwhile.
- ``{"op": "priority"}``: how this process yields the CPU to the stack
  (:func:`yield_to_the_stack`): ``{"nice": …, "policy": …}``.
- ``{"op": "quit"}``: close everything and exit.

The benchmark runs several of these so that the load is not in the notifier's
process, nor in the benchmark's, and no one process needs 10,000 sockets. Each
runs on uvloop where it is installed, as the services do, and behind the stack
in the scheduler's eyes (:func:`yield_to_the_stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import WebSocketException
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from reelflow_common.lifecycle import run_service
from reelflow_common.openfiles import raise_open_files
from reelflow_devtools.bench.stats import parse_time


@dataclass
class Hot:
    """What one hot watcher saw."""

    snapshot_seq: int = -1
    #: the last ``seq`` this watcher has (a snapshot's, or the last event's)
    last_seq: int = -1
    #: events that did not follow the last ``seq`` (a gap) or repeated one (a duplicate)
    gaps: int = 0
    duplicates: int = 0
    received: dict[int, float] = field(default_factory=dict)  # seq -> wall time
    changed_at: dict[int, float] = field(default_factory=dict)  # seq -> clip completed_at
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def saw_snapshot(self, message: dict[str, Any]) -> None:
        self.snapshot_seq = self.last_seq = message.get("seq", -1)
        if message.get("project", {}).get("status", "generating") != "generating":
            self.finished.set()  # it finished before this watcher came: no event follows

    def saw(self, message: dict[str, Any], at: float) -> None:
        kind = message.get("type")
        if kind == "snapshot":  # the first message, or too slow for the backlog
            self.saw_snapshot(message)
            return
        seq = message.get("seq")
        if seq is None:  # not about the project's sequence (an error)
            return
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if seq != self.last_seq + 1:
            self.gaps += 1
        self.last_seq = seq
        if kind == "clip.updated":
            self.received[seq] = at
            completed_at = message["clip"].get("completed_at")
            if completed_at:
                self.changed_at[seq] = parse_time(completed_at)
        elif kind == "project.finished":
            self.finished.set()


#: nice levels below the stack a load process runs at (about a tenth of its CPU weight)
LOAD_NICE = 10


def yield_to_the_stack() -> dict[str, Any]:
    """Run this process behind the stack: :data:`LOAD_NICE` levels nicer, and ``SCHED_BATCH``.

    The load stands in for browsers on other machines but shares the cores with
    the notifier: at normal priority, a frame the notifier wrote woke a load
    process that could take the core from it. ``SCHED_BATCH`` keeps a wakeup from
    preempting; the load still shares the cores. A read is stamped when this
    process gets to it, never before its bytes arrived. Returns what took effect
    (a setting the platform lacks or refuses stays None).
    """
    got: dict[str, Any] = {"nice": None, "policy": None}
    with contextlib.suppress(OSError):
        got["nice"] = os.nice(LOAD_NICE)
    if hasattr(os, "SCHED_BATCH"):  # Linux
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            got["policy"] = "SCHED_BATCH"
    return got


class Inbox:
    """What the sockets of this process received, handled once a burst of reads is over.

    A process holds hundreds of sockets that one change reaches at once.
    Handled as each was read, the last socket's arrival was stamped after
    the decompressing, parsing and checking of every message read before it
    in this process, time a browser with one socket never spends. So each
    read is only stamped and queued here; the queue is handled, in arrival
    order, by a timer callback that the event loop runs after the reads of
    its turn, and only on a turn that read nothing new (or when
    :data:`MAX_PENDING` reads wait): every socket of a burst is stamped
    before any of its messages is handled. Nothing is skipped: each message
    is still decoded and its ``seq`` checked.

    The queue is handled in slices of at most :data:`SLICE_S`, the loop
    reading between them: one change's burst (a process's 250 hot sockets)
    took tens of milliseconds to handle on a busy machine, and the next
    change's bytes, arriving meanwhile, were stamped only once it was over.
    With Runware's progress stored as a clip runs, changes do come that
    close together (a progress event just before a clip's end).
    """

    #: reads handled at the latest this many at a time, however long a burst
    MAX_PENDING = 4096
    #: the longest the queue is handled before the loop reads again (seconds)
    SLICE_S = 0.002

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending: deque[Callable[[], None]] = deque()
        #: reads queued since the last look
        self._fresh = 0
        self._scheduled = False

    def put(self, handle: Callable[[], None]) -> None:
        self._pending.append(handle)
        self._fresh += 1
        if not self._scheduled:
            self._scheduled = True
            # call_later, not call_soon: a callback due now runs after the reads of the
            # turn that queued it (on asyncio's loop and on uvloop's alike).
            self._loop.call_later(0, self._look)

    def _look(self) -> None:
        if self._fresh and len(self._pending) < self.MAX_PENDING:
            self._fresh = 0
            self._loop.call_later(0, self._look)  # the burst goes on: look after the next turn
            return
        self._fresh = 0
        until = time.perf_counter() + self.SLICE_S
        try:
            while self._pending and time.perf_counter() < until:
                self._pending.popleft()()
        finally:  # a handler that raised (the loop reports it) stops neither the rest nor later
            if self._pending:
                self._loop.call_later(0, self._look)  # the rest after the next turn's reads
            else:
                self._scheduled = False


class Watcher(asyncio.Protocol):
    """One WebSocket client on websockets' sans-I/O protocol: no task of its own.

    The handshake, permessage-deflate (offered as browsers do), answering the
    server's pings and the closing handshake are websockets' own. Bytes are
    stamped in ``data_received`` as they arrive and handled by the process's
    :class:`Inbox`, in arrival order, once the burst they came in is over.
    """

    def __init__(self, url: str, *, deflate: bool, hot: Hot | None, inbox: Inbox) -> None:
        self.conn = ClientProtocol(
            parse_uri(url),
            extensions=enable_client_permessage_deflate(None) if deflate else None,
            max_size=None,
        )
        self.hot = hot
        #: the first message (the snapshot), or why there is none
        self._inbox = inbox
        self.first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.conn.send_request(self.conn.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._inbox.put(partial(self.received, data, time.time()))

    def received(self, data: bytes, at: float) -> None:
        """Handle bytes that arrived at ``at``."""
        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if isinstance(event, Response):
                if self.conn.handshake_exc is not None:
                    self._fail(self.conn.handshake_exc)
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.CONT):
                self._text(event, at)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        # After the bytes that came before it.
        self._inbox.put(partial(self._lost, exc))

    def _lost(self, exc: Exception | None) -> None:
        self.conn.receive_eof()
        self._fail(exc or ConnectionError("closed before the first message"))

    def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        with contextlib.suppress(WebSocketException):
            self.conn.send_close()
        self._flush()
        self._transport.close()

    def _text(self, frame: Frame, at: float) -> None:
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return
        raw = b"".join(self._parts)
        self._parts = []
        message = json.loads(raw)
        if self.hot is not None:
            # In order, here: events may follow the snapshot in the same read.
            self.hot.saw(message, at)
        if not self.first.done():
            self.first.set_result(message)

    def _flush(self) -> None:
        assert self._transport is not None
        for data in self.conn.data_to_send():
            if self._transport.is_closing():
                continue  # closed while these bytes waited in the inbox: none can go out
            if data:
                self._transport.write(data)
            elif self._transport.can_write_eof():
                self._transport.write_eof()

    def _fail(self, exc: BaseException) -> None:
        if not self.first.done():
            self.first.set_exception(exc)


async def open_watcher(
    url: str, *, deflate: bool, hot: Hot | None, inbox: Inbox, timeout_s: float
) -> Watcher:
    """A connected watcher that has its first message (``watcher.first``)."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    watcher = Watcher(url, deflate=deflate, hot=hot, inbox=inbox)
    async with asyncio.timeout(timeout_s):
        transport, _ = await loop.create_connection(
            lambda: watcher, parts.hostname or "127.0.0.1", parts.port or 80
        )
        try:
            await watcher.first
        except BaseException:
            transport.close()
            raise
    return watcher


class Pauses:
    """This process's garbage-collector passes, and freezing what it holds out of them.

    A load process holds thousands of sockets' objects; a full pass over them
    took 138-328 ms of wall time at nice 10 while changes flowed, during which no arrival
    was stamped: a pause of the load's own, which browsers holding one socket
    each do not have. So, once its sockets are open, everything is frozen
    (``gc.freeze()``, as the notifier does with its own, ``gcpolicy``); what
    each message allocates is still collected. The passes while the changes
    flow are counted, so a pause that remains shows in the results.
    """

    def __init__(self) -> None:
        self.passes = 0
        #: the longest pass in wall time (waiting for a core included: the load runs at
        #: nice 10) and in this thread's CPU time
        self.longest_s = 0.0
        self.longest_cpu_s = 0.0
        self._started = (0.0, 0.0)
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        else:
            wall, cpu = self._started
            self.passes += 1
            self.longest_s = max(self.longest_s, time.perf_counter() - wall)
            self.longest_cpu_s = max(self.longest_cpu_s, time.thread_time() - cpu)

    def freeze(self) -> None:
        gc.collect()
        gc.freeze()

    def restart(self) -> None:
        self.passes, self.longest_s, self.longest_cpu_s = 0, 0.0, 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "longest_ms": round(self.longest_s * 1000, 1),
            "longest_cpu_ms": round(self.longest_cpu_s * 1000, 1),
        }

    def close(self) -> None:
        """Stop counting, and thaw what was frozen."""
        gc.callbacks.remove(self._observe)
        gc.unfreeze()


class Load:
    def __init__(self) -> None:
        self.watchers: list[Watcher] = []
        self.hot: list[Hot] = []
        self.inbox = Inbox()
        self.pauses = Pauses()

    async def connect(
        self, url: str, count: int, hot: bool, concurrency: int, deflate: bool
    ) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}
        began = time.monotonic()

        async def one() -> bool:
            seen = Hot() if hot else None
            async with gate:
                try:
                    watcher = await open_watcher(
                        url, deflate=deflate, hot=seen, inbox=self.inbox, timeout_s=120
                    )
                except (OSError, TimeoutError, WebSocketException) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return False
            self.watchers.append(watcher)
            if seen is not None:
                self.hot.append(seen)
            return True

        done = await asyncio.gather(*(one() for _ in range(count)))
        seconds = round(time.monotonic() - began, 2)
        self.pauses.freeze()
        return {
            "ok": sum(done),
            "failed": count - sum(done),
            "errors": errors,
            "seconds": seconds,
        }

    async def collect(self, deadline_s: float) -> dict[str, Any]:
        self.pauses.restart()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                await asyncio.gather(*(w.finished.wait() for w in self.hot))
        changes: dict[int, dict[str, float]] = {}
        for watcher in self.hot:
            for seq, at in watcher.received.items():
                entry = changes.setdefault(seq, {"count": 0, "first": at, "last": at})
                entry["count"] += 1
                entry["first"] = min(entry["first"], at)
                entry["last"] = max(entry["last"], at)
                if seq in watcher.changed_at:
                    entry["changed_at"] = watcher.changed_at[seq]
        return {
            "hot": len(self.hot),
            "finished": sum(w.finished.is_set() for w in self.hot),
            "latest_snapshot_seq": max((w.snapshot_seq for w in self.hot), default=-1),
            "gaps": sum(w.gaps for w in self.hot),
            "duplicates": sum(w.duplicates for w in self.hot),
            "changes": {str(seq): entry for seq, entry in changes.items()},
            "gc_passes": self.pauses.summary(),
        }

    async def close(self) -> None:
        for watcher in self.watchers:
            watcher.close()
        await asyncio.sleep(0)


async def serve() -> None:
    raise_open_files()
    priority = yield_to_the_stack()
    load = Load()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        op = command["op"]
        if op == "connect":
            answer = await load.connect(
                command["url"],
                command["count"],
                command["hot"],
                command["concurrency"],
                command.get("deflate", True),
            )
        elif op == "collect":
            answer = await load.collect(command["deadline_s"])
        elif op == "priority":
            answer = priority
        else:
            break
        print(json.dumps(answer), flush=True)
    await load.close()


def main() -> None:
    # uvloop where installed, as the services run: a read costs the load less CPU.
    run_service(serve())


if __name__ == "__main__":
    main()
