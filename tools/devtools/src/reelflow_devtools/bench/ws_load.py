"""A WebSocket load process: many watchers in a process of their own, driven over stdin/stdout.

``python -m reelflow_devtools.bench.ws_load`` reads one JSON command a line and
answers one JSON line each:

- ``{"op": "connect", "url": …, "count": n, "hot": bool, "concurrency": c, "deflate": bool}``:
  open ``n`` WebSockets to ``url`` (at most ``c`` handshakes at once; offering
  permessage-deflate, as browsers do, unless ``deflate`` is false), each held open
  until ``quit``; a *hot* watcher records when each ``clip.updated`` arrived.
  Answer: ``{"ok": …, "failed": …, "errors": {…}, "seconds": …}``.
- ``{"op": "collect", "deadline_s": d}``: wait until every hot watcher has seen
  ``project.finished`` (or the deadline), then answer per change (``seq``) the
  clip's ``completed_at`` and the first and last arrival and how many watchers had it.
- ``{"op": "quit"}``: close everything and exit.

The benchmark runs several of these so that the load is not in the notifier's
process, nor in the benchmark's, and no one process needs 10,000 sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from reelflow_devtools.bench.stats import parse_time


@dataclass
class Hot:
    """What one hot watcher saw."""

    snapshot_seq: int = -1
    received: dict[int, float] = field(default_factory=dict)  # seq -> wall time
    changed_at: dict[int, float] = field(default_factory=dict)  # seq -> clip completed_at
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def saw_snapshot(self, message: dict[str, Any]) -> None:
        self.snapshot_seq = message.get("seq", -1)
        if message.get("project", {}).get("status", "generating") != "generating":
            self.finished.set()  # it finished before this watcher came: no event follows


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to the hard one; the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Load:
    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.hot: list[Hot] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(
        self, url: str, count: int, hot: bool, concurrency: int, deflate: bool
    ) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}
        began = time.monotonic()

        async def one() -> bool:
            async with gate:
                try:
                    ws = await websockets.connect(
                        url,
                        max_queue=None,
                        open_timeout=120,
                        ping_interval=None,
                        compression="deflate" if deflate else None,
                    )
                    first = json.loads(await asyncio.wait_for(ws.recv(), 120))
                except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return False
            self.sockets.append(ws)
            watcher = Hot()
            watcher.saw_snapshot(first)
            if hot:
                self.hot.append(watcher)
            self.tasks.append(asyncio.create_task(_read(ws, watcher, hot)))
            return True

        done = await asyncio.gather(*(one() for _ in range(count)))
        return {
            "ok": sum(done),
            "failed": count - sum(done),
            "errors": errors,
            "seconds": round(time.monotonic() - began, 2),
        }

    async def collect(self, deadline_s: float) -> dict[str, Any]:
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
            "changes": {str(seq): entry for seq, entry in changes.items()},
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def _read(ws: ClientConnection, watcher: Hot, hot: bool) -> None:
    with contextlib.suppress(websockets.WebSocketException):
        async for raw in ws:
            if not hot:
                continue
            now = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "clip.updated":
                watcher.received[message["seq"]] = now
                completed_at = message["clip"].get("completed_at")
                if completed_at:
                    watcher.changed_at[message["seq"]] = parse_time(completed_at)
            elif kind == "project.finished":
                watcher.finished.set()
            elif kind == "snapshot":  # too slow for the backlog: a fresh snapshot
                watcher.saw_snapshot(message)


async def serve() -> None:
    raise_open_files_limit()
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
        else:
            break
        print(json.dumps(answer), flush=True)
    await load.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
