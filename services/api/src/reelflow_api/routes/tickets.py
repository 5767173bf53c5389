"""``POST /v1/ws-tickets``: a single-use ticket that opens one WebSocket, for browsers.

A browser cannot set headers on a WebSocket, and an API key in a URL ends up in
proxy and ingress logs. A ticket lives a minute, opens one socket, and names no
key: the notifier takes it as ``?ticket=``.

Each ticket is a MongoDB write, so one API key gets ``ws_ticket_burst`` at once
from a replica, then ``ws_ticket_rate_per_s``; one more is ``429`` with
``Retry-After``, before anything is written.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from reelflow_api.auth import caller
from reelflow_api.deps import IndexesEnsured, State, TenantId
from reelflow_api.problems import Problem, problem_responses
from reelflow_common.store.timefmt import rfc3339

router = APIRouter(prefix="/v1/ws-tickets", tags=["live updates"])

_TOO_MANY_DESCRIPTION = (
    "This API key asked for tickets faster than `REELFLOW_WS_TICKET_RATE_PER_S` past its"
    " burst; retry after `Retry-After`."
)


class WsTicket(BaseModel):
    """A single-use ticket: connect with ``?ticket=`` before it expires."""

    ticket: str = Field(examples=["wst_8Jx2kQ9vR4mZ7nP1sT6yL3bH5cD0fG2a"])
    expires_at: str = Field(
        json_schema_extra={"format": "date-time"}, examples=["2026-12-01T10:01:00.123000Z"]
    )
    expires_in: int = Field(description="seconds the ticket stays valid", examples=[60])


@router.post(
    "",
    status_code=201,
    response_model=WsTicket,
    dependencies=[IndexesEnsured],
    responses=problem_responses(401, 503)
    | {429: {**problem_responses(429)[429], "description": _TOO_MANY_DESCRIPTION}},
)
async def create_ws_ticket(request: Request, state: State, tenant_id: TenantId) -> WsTicket:
    """A ticket for ``/v1/ws?ticket=…``: valid for ``expires_in`` seconds, for one connection."""
    key = caller(request).key
    if (wait_s := state.ticket_rate.take(key)) > 0:
        raise _too_many_tickets(state.settings.ws_ticket_rate_per_s, wait_s)
    issued = await state.tickets.issue(tenant_id, key)
    return WsTicket(
        ticket=issued.ticket,
        expires_at=rfc3339(issued.expires_at),
        expires_in=round(state.settings.ws_ticket_ttl_s),
    )


def _too_many_tickets(rate_per_s: float, wait_s: float) -> Problem:
    detail = (
        f"This API key asked for WebSocket tickets faster than {rate_per_s:g} a second;"
        " try again after Retry-After seconds."
    )
    return Problem(
        429,
        "Too Many Requests",
        detail,
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )
