"""Which tenant a WebSocket client is: ``Authorization: Bearer <key>``, or ``?token=<key>``."""

from __future__ import annotations

from starlette.websockets import WebSocket

from reelflow_common.store import ApiKeyStore


def presented_key(websocket: WebSocket) -> str | None:
    """The key from the header, else from ``?token=`` (browsers cannot set headers)."""
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        return key.strip() or None if scheme.lower() == "bearer" else None
    return websocket.query_params.get("token") or None


async def authenticate(websocket: WebSocket, api_keys: ApiKeyStore) -> str | None:
    """The tenant of the presented key; None without a key or for an unknown one."""
    key = presented_key(websocket)
    if key is None:
        return None
    return await api_keys.tenant_for_key(key)
