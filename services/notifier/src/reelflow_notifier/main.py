"""Composition root: settings, logging, the app and the uvicorn server that serves it."""

from __future__ import annotations

import gc
import socket

import uvicorn

from reelflow_common.logging import configure_logging
from reelflow_common.tracing import configure_tracing
from reelflow_notifier.app import create_app
from reelflow_notifier.compression import NotifierWebSocketProtocol
from reelflow_notifier.settings import Settings


def server_config(settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of a notifier (tests serve through the same one)."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        # The sans-I/O websockets protocol pings clients and awaits write flow
        # control, so a slow reader blocks its sender and overflows its outbox;
        # ours negotiates deflate without context takeover (see compression).
        ws=NotifierWebSocketProtocol,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        log_config=None,  # our structlog set-up formats uvicorn's lines too
        proxy_headers=True,
        # Open WebSockets get close 1012 at shutdown; this bounds the wait for them.
        timeout_graceful_shutdown=10,
    )


async def main(settings: Settings | None = None, *, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles both)."""
    settings = settings or Settings()
    configure_logging(settings, service="notifier")
    configure_tracing(settings, service="notifier")
    server = uvicorn.Server(server_config(settings))
    # Every module is imported by now and none of it is ever freed: out of the cyclic
    # collector's sight, a full collection (a pause for every socket) scans less.
    gc.freeze()
    await server.serve(sockets=[sock] if sock is not None else None)
