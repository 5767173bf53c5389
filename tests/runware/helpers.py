"""A simulator and a client that talks to it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from reelflow_common.runware import RunwareClient, VideoRequest
from reelflow_common.settings import RunwareSettings
from reelflow_runware_sim.testing import RunningSimulator, running_simulator


def client_settings(base_url: str, api_key: str, **overrides: Any) -> RunwareSettings:
    return RunwareSettings(
        runware_base_url=base_url,
        runware_api_key=SecretStr(api_key),
        runware_timeout_s=10.0,
        **overrides,
    )


@asynccontextmanager
async def sim_and_client(
    *,
    api_key: str | None = None,
    http: aiohttp.ClientSession | None = None,
    client_overrides: dict[str, Any] | None = None,
    **sim_overrides: Any,
) -> AsyncIterator[tuple[RunningSimulator, RunwareClient]]:
    """A fresh simulator and a client for it (the client owns its pool unless ``http`` is given)."""
    sim_overrides.setdefault("seed", 7)
    async with running_simulator(**sim_overrides) as sim:
        settings = client_settings(sim.base_url, api_key or sim.api_key, **(client_overrides or {}))
        if http is not None:
            yield sim, RunwareClient(settings, http)
            return
        async with RunwareClient.open(settings) as client:
            yield sim, client


def video(prompt: str = "a red fox in snow", **fields: Any) -> VideoRequest:
    """A request the simulator accepts for Veo 3.1 Fast, with a fresh task UUID."""
    values: dict[str, Any] = {
        "task_uuid": str(uuid.uuid4()),
        "model": "google:3@3",
        "positive_prompt": prompt,
        "duration": 4,
        "width": 1280,
        "height": 720,
    }
    values.update(fields)
    return VideoRequest(**values)


@asynccontextmanager
async def answering(status: int, content: bytes, content_type: str) -> AsyncIterator[str]:
    """A local HTTP server that answers every request so; its base URL."""

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=status, body=content, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def refusing_url() -> str:
    """A base URL where nothing listens (a port just freed): every connect is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
