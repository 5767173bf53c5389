"""Slow clients are cut off: a connection cannot be held open by sending a request slowly.

* Headers: :func:`reelflow_common.slow_headers.http_protocol` (the notifier's too)
  closes a connection whose next request's headers are not complete
  ``header_timeout_s`` after it opened or after the previous answer.
* Body: :class:`BodyDeadline` answers ``408`` problem+json when a request's
  body has not fully arrived ``timeout_s`` after the request began, so a slow
  upload gives back its in-flight slot instead of holding it.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelflow_api.problems import Problem, problem_response


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
