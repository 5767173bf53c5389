"""Composition root: settings, logging, the app and the uvicorn server that serves it."""

from __future__ import annotations

import gc
import socket

import uvicorn

from reelflow_common.logging import configure_logging, get_logger
from reelflow_common.openfiles import raise_open_files
from reelflow_common.ops import bound_socket
from reelflow_common.slow_headers import http_protocol
from reelflow_common.tracing import configure_tracing
from reelflow_notifier.app import create_app
from reelflow_notifier.compression import NotifierWebSocketProtocol
from reelflow_notifier.gcpause import time_pauses
from reelflow_notifier.gcpolicy import GcPolicy
from reelflow_notifier.settings import Settings

log = get_logger(__name__)

#: the largest message a client may send (a larger one closes its socket: 1009)
CLIENT_MESSAGE_MAX_BYTES = 4096


def server_config(settings: Settings, *, gc_policy: GcPolicy | None = None) -> uvicorn.Config:
    """The uvicorn configuration of a notifier (tests serve through the same one)."""
    return uvicorn.Config(
        create_app(settings, gc_policy=gc_policy),
        host=settings.http_host,
        port=settings.http_port,
        # The sans-I/O websockets protocol pings clients and awaits write flow
        # control, so a slow reader blocks its sender and overflows its outbox;
        # ours negotiates deflate without context takeover (see compression).
        ws=NotifierWebSocketProtocol,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # A client's messages are subscribes and unsubscribes of about 100 bytes; uvicorn's
        # default (16 MiB) would let every socket make the notifier buffer that much.
        ws_max_size=CLIENT_MESSAGE_MAX_BYTES,
        log_config=None,  # our structlog set-up formats uvicorn's lines too
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,  # as the api's
        # A connection that sends no request, or its headers slowly, is cut off (as the
        # api's); idle keep-alive connections close after uvicorn's 5 s.
        http=http_protocol(settings.http_header_timeout_s),
        # Open WebSockets get close 1012 at shutdown; this bounds the wait for them.
        timeout_graceful_shutdown=10,
    )


#: young objects allocated before the cyclic collector looks at them (CPython's default: 700)
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Keep the cyclic collector's passes short: each one is a pause for every socket.

    A change sent to 1,000 watchers allocates tens of thousands of objects
    that live until the last watcher has it; at the default young threshold
    the collector runs many times within that burst and promotes what is still
    queued. Looking every 10,000 allocations lets most of a burst die young,
    while a young pass stays short (a larger threshold made the middle
    generation's passes take as long as a full one). The imported modules,
    never freed, are frozen out of every pass; open sockets' objects are
    frozen too, as they come (:mod:`reelflow_notifier.gcpolicy`).
    """
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def main(settings: Settings | None = None, *, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles both)."""
    settings = settings or Settings()
    configure_logging(settings, service="notifier")
    configure_tracing(settings, service="notifier")
    # One file per socket: 10,000 of them need more than a container's usual soft 1,024.
    log.info("open_files_limit", limit=raise_open_files())
    # Bound before the app starts: a taken port stops it before it connects to anything.
    sock = sock or bound_socket(settings.http_host, settings.http_port)
    server = uvicorn.Server(server_config(settings, gc_policy=GcPolicy()))
    tune_garbage_collector()
    time_pauses()
    await server.serve(sockets=[sock])
