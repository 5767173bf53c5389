"""A connection cannot be held open by sending a request's headers slowly, or nothing at all.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``,
armed once an answer is complete): a client that opens a connection and sends
nothing, or sends its headers a byte at a time, keeps it for ever.
:func:`http_protocol` gives uvicorn a protocol class that closes a connection
whose next request's headers are not complete ``header_timeout_s`` after it
opened or after the previous answer. A WebSocket upgrade ends the deadline: the
socket is the WebSocket protocol's from then on (its pings bound a silent
client). The api and the notifier both serve through it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # what uvicorn's "auto" picks: httptools when installed (uvicorn[standard])
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - uvicorn without its extras
    _Base = H11Protocol  # type: ignore[assignment,misc]


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing connections whose headers come too slowly."""

    class HeaderDeadline(_Base):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def handle_websocket_upgrade(self, *args: Any) -> None:
            # The upgrade makes no new request cycle: the deadline would close the socket.
            self._disarm_header_deadline()
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            self._disarm_header_deadline()
            # A request whose headers are complete has a new cycle by the deadline.
            waiting_after = self.cycle
            self._header_deadline = self.loop.call_later(
                header_timeout_s, self._headers_late, waiting_after
            )

        def _disarm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_late(self, waiting_after: object) -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline
