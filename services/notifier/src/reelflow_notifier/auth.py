"""Who a WebSocket client is: ``Authorization: Bearer <key>``, ``?ticket=``, or ``?token=<key>``.

Browsers cannot set headers: they ask the API for a single-use ticket
(``POST /v1/ws-tickets``) and pass it as ``?ticket=``. ``?token=<key>`` stays
because the contract documents it; the key is redacted from the logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.websockets import WebSocket

from reelflow_common.bearer import bearer_token
from reelflow_common.store import ApiKeyStore
from reelflow_common.store.tickets import WsTicketStore


@dataclass(frozen=True)
class Credential:
    """An authenticated client: its tenant, and the key to re-validate while it stays."""

    tenant_id: str
    api_key: str


def presented_key(websocket: WebSocket) -> str | None:
    """The key from the header (read as the api reads it), else from ``?token=`` (browsers
    cannot set headers)."""
    header = websocket.headers.get("authorization")
    if header is not None:
        return bearer_token(header)
    return websocket.query_params.get("token") or None


async def authenticate(
    websocket: WebSocket, api_keys: ApiKeyStore, tickets: WsTicketStore
) -> Credential | None:
    """The client's credential; None without one, or for an unknown key or ticket.

    The header wins over a ticket, and a ticket over ``?token=``; a ticket is
    used up even when the connection fails afterwards.
    """
    ticket = websocket.query_params.get("ticket")
    if ticket and "authorization" not in websocket.headers:
        grant = await tickets.consume(ticket)
        if grant is None:
            return None
        # The key may have been revoked since the ticket was issued.
        if await api_keys.tenant_for_key(grant.api_key) != grant.tenant_id:
            return None
        return Credential(grant.tenant_id, grant.api_key)
    key = presented_key(websocket)
    if key is None:
        return None
    tenant_id = await api_keys.tenant_for_key(key)
    return None if tenant_id is None else Credential(tenant_id, key)
