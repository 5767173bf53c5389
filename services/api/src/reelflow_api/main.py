"""Composition root: settings, logging, the app and the uvicorn server that serves it."""

from __future__ import annotations

import math
import socket

import uvicorn

from reelflow_api.app import create_app
from reelflow_api.settings import Settings
from reelflow_common.logging import configure_logging
from reelflow_common.openfiles import raise_open_files
from reelflow_common.ops import bound_socket
from reelflow_common.slow_headers import http_protocol
from reelflow_common.tracing import configure_tracing


def server_config(settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of the API (tests serve through the same one)."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        # Our structlog set-up formats uvicorn's lines too, and redacts the webhook
        # secret in the access log's paths (reelflow_common.redact).
        log_config=None,
        # The client's address and scheme from X-Forwarded-*, when its peer is a trusted
        # proxy: a setting like all ours (uvicorn's own FORWARDED_ALLOW_IPS is not read).
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Requests in flight (a ?wait= long poll among them) get the same bound as
        # the workers' messages, then are cancelled: SIGTERM never waits minutes.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        # Slow clients: idle connections, and headers that trickle in, are cut off.
        timeout_keep_alive=settings.http_keepalive_timeout_s,
        http=http_protocol(settings.http_header_timeout_s),
    )


async def main(settings: Settings | None = None, *, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles both)."""
    settings = settings or Settings()
    configure_logging(settings, service="api")
    configure_tracing(settings, service="api")
    raise_open_files()  # one file per connection, idle keep-alive ones included
    # Bound before the app starts: a taken port stops it before it connects to anything.
    sock = sock or bound_socket(settings.http_host, settings.http_port)
    await uvicorn.Server(server_config(settings)).serve(sockets=[sock])
