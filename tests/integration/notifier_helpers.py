"""Running notifiers in-process and talking to them like a frontend would."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reelflow_notifier.gcpolicy import GcPolicy
from reelflow_notifier.main import server_config
from reelflow_notifier.settings import Settings
from tests.waiting import DEADLINE_S, READY_DEADLINE_S, eventually


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # pytest owns the process's signal handlers.
        yield


@dataclass(frozen=True)
class RunningNotifier:
    base_url: str  # ws://127.0.0.1:<port>
    http_url: str
    app: Starlette


@asynccontextmanager
async def running_notifier(
    settings: Settings, *, wait_until_ready: bool = True, gc_policy: GcPolicy | None = None
) -> AsyncIterator[RunningNotifier]:
    """A notifier served by uvicorn on a free port, with its lifespan, until exit.

    Unless told not to, it waits until ``/readyz`` says ``"status": "ok"``, every
    check true (a 200 ``degraded`` is not enough): the fan-out queue exists, so no
    event published afterwards is missed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(settings, gc_policy=gc_policy)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), "notifier started")
        if task.done():
            task.result()
            raise RuntimeError("the notifier stopped during start-up")
        app = config.app
        assert isinstance(app, Starlette)
        running = RunningNotifier(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", app)
        if wait_until_ready:
            await eventually(lambda: _ready(running), "notifier ready", READY_DEADLINE_S)
        yield running
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        sock.close()


async def _ready(notifier: RunningNotifier) -> bool:
    async with httpx.AsyncClient(base_url=notifier.http_url, timeout=DEADLINE_S) as http:
        return bool((await http.get("/readyz")).json()["status"] == "ok")


@asynccontextmanager
async def client(
    url: str, *, key: str | None = None, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    # proxy=None: a proxy configured in the environment must not catch 127.0.0.1.
    async with connect(
        url, additional_headers=headers, open_timeout=DEADLINE_S, proxy=None, **kwargs
    ) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message, parsed; fails after the deadline."""
    raw = await asyncio.wait_for(ws.recv(), DEADLINE_S)
    message: dict[str, Any] = json.loads(raw)
    return message


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    """Code and reason of the close frame the server sends next (messages before it skipped)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), DEADLINE_S)
    except ConnectionClosed:
        pass
    if ws.close_code is None:
        raise AssertionError("closed without a close frame from the server")
    return ws.close_code, ws.close_reason or ""


def metric(name: str, **labels: str) -> float:
    """A sample of the process's Prometheus registry (0 before first use)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
