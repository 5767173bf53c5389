"""Injected faults at the HTTP level: capacity errors and lost answers."""

import random

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .config import SimConfig
from .errors import ApiError

# Runware documents the statuses as transient (rate-limits page) but not their codes;
# these codes are from the SDKs' error catalogs.
_CAPACITY = (
    (429, "rateLimitExceeded", "Too many requests: the model queue is at capacity. Retry later."),
    (503, "serviceUnavailable", "Temporary capacity constraint. Retry later."),
    (504, "requestTimeout", "The request exceeded the maximum queue wait time."),
)


def roll_http_fault(rng: random.Random, config: SimConfig) -> ApiError | None:
    """Decide, with one draw, whether this request fails with 429, 503 or 504."""
    roll = rng.random()
    for (status, code, message), rate in zip(
        _CAPACITY, (config.rate_429, config.rate_503, config.rate_504), strict=True
    ):
        if roll < rate:
            return ApiError(code, message, status)
        roll -= rate
    return None


class DroppedAnswer(Response):
    """An ASGI response that sends the status line and headers, then no body.

    Used for a submit that *was* accepted (stored, billed) but whose answer is lost.
    Returning from the ASGI app without completing the response makes uvicorn close the
    connection, so the client sees the peer hang up mid-answer (httpx raises
    `RemoteProtocolError`) and cannot tell whether the task was accepted: the same as a
    connection reset or a proxy dying in flight. uvicorn logs "ASGI callable returned
    without completing response." for each one; that line is expected.
    """

    def __init__(self, body_length: int) -> None:
        super().__init__(media_type="application/json")
        self.body_length = body_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start a 200 response that promises a body, and never send it."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(self.body_length).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
