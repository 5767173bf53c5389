"""Slow clients are cut off: a connection cannot be held open by sending a request slowly.

* Headers: uvicorn bounds only the idle time between requests
  (``timeout_keep_alive``); a client that sends its headers a byte at a time
  could keep a connection for ever. :func:`http_protocol` gives uvicorn a
  protocol class that closes a connection whose next request's headers are not
  complete ``header_timeout_s`` after it opened or after the previous answer.
* Body: :class:`BodyDeadline` answers ``408`` problem+json when a request's
  body has not fully arrived ``timeout_s`` after the request began, so a slow
  upload gives back its in-flight slot instead of holding it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from reelflow_api.problems import Problem, problem_response

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

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            # A request whose headers are complete has a new cycle by the deadline.
            waiting_after = self.cycle
            self._header_deadline = self.loop.call_later(
                header_timeout_s, self._headers_late, waiting_after
            )

        def _headers_late(self, waiting_after: object) -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


class BodyDeadline:
    """A request's body must arrive within ``timeout_s`` of the request's start, else 408."""

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        refused: Problem | None = None
        body_done = False
        started = False

        async def receive_in_time() -> Message:
            nonlocal refused, body_done
            if body_done:  # waiting for a disconnect is not reading the body
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = Problem(
                    408,
                    "Request Timeout",
                    f"The request body did not arrive within {self._timeout_s:g} seconds.",
                    headers={"Connection": "close"},
                )
                raise refused from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_watched)
        except Problem as problem:
            # Raised from ``receive`` where no exception handler was around to answer it.
            if started or problem is not refused:
                raise
            await problem_response(problem)(scope, receive, send)
