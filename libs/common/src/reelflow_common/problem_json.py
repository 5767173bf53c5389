"""The shape of an error answer, ``application/problem+json`` (RFC 9457): the api's errors and a
WebSocket handshake the api or the notifier refuses before accepting it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

PROBLEM_JSON = "application/problem+json"

#: the ASGI extension that lets an app answer a WebSocket handshake with an HTTP response
_DENIAL_RESPONSE = "websocket.http.response"


def problem_body(status: int, title: str, detail: str) -> dict[str, Any]:
    """The members every problem has; ``type`` is the title in lower case with dashes."""
    return {
        "type": f"https://reelflow.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }


async def refuse_handshake(
    websocket: WebSocket,
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Refuse a WebSocket handshake with this problem as its HTTP answer (with ``headers``).

    A server without the denial-response extension (uvicorn's WebSocket protocols
    have it) can only refuse with its bare ``403``.
    """
    if _DENIAL_RESPONSE not in (websocket.scope.get("extensions") or {}):
        await websocket.close()
        return
    body = problem_body(status, title, detail)
    await websocket.send_denial_response(
        JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
    )
