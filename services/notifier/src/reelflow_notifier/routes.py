"""The WebSocket endpoints: ``/v1/ws/projects/{project_id}`` and ``/v1/ws`` (multiplexed).

Refusals happen after the handshake, as a close frame with a code and a reason,
because a browser cannot see the HTTP status of a refused handshake:

====  ========================================  ====================================
code  meaning                                   what a client does
====  ========================================  ====================================
4400  bad query (``after_seq`` not an int ≥ 0)   fix the URL
4401  no API key, an unknown one, a used or      a new ticket if the key is valid,
      expired ticket; or the key was revoked     else stop and ask for a valid key
      while connected
4404  no such project for this key's tenant      stop (another tenant's project too)
4429  the key has ``ws_max_connections_per_     close sockets it no longer needs;
      key`` sockets open on this replica         reconnect later, with backoff
1011  server error (e.g. database unreachable)   reconnect later with ``after_seq``
1012  server restarting (a deploy)              reconnect with ``after_seq``
1013  this replica is full: it holds            reconnect later, with backoff (a
      ``ws_max_connections`` sockets (checked   new ticket): it may land on
      first, before the key is looked up); or   another replica
      too many unknown keys being checked at
      once (a flood of wrong ones)
====  ========================================  ====================================

Every socket is counted against ``ws_max_connections`` from the start of its
endpoint to its close (:mod:`reelflow_notifier.capacity`); one refused for any
other reason gives its place back when it is closed.

A handshake to a path the notifier does not serve is refused before it is
accepted, with a 404 problem+json (a browser sees only a failed connection).

Keepalive is uvicorn's: the server pings every ``ws_ping_interval_s`` and drops
a client that has not answered within ``ws_ping_timeout_s`` (close 1011,
"keepalive ping timeout"). Browsers answer pings by themselves. Text the client
sends on the single-project endpoint is ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from reelflow_common.logging import bound_context, get_logger
from reelflow_common.problem_json import refuse_handshake
from reelflow_common.store import KeyLookupsBusy
from reelflow_common.store.auth import key_id
from reelflow_common.tokenbucket import TokenBucket
from reelflow_notifier.auth import Credential, authenticate, presented_key
from reelflow_notifier.keyslots import CLOSE_TOO_MANY_CONNECTIONS, KeySlot
from reelflow_notifier.keywatch import CLOSE_UNAUTHORIZED
from reelflow_notifier.metrics import WS_REFUSALS_TOTAL
from reelflow_notifier.multiplex import Subscriptions
from reelflow_notifier.session import CLOSE_NOT_FOUND, CLOSE_SERVER_ERROR, Session
from reelflow_notifier.state import NotifierState, state_of

CLOSE_BAD_REQUEST = 4400
#: RFC 6455's "Try Again Later": a refusal for load, not for the client's request
CLOSE_TRY_AGAIN_LATER = 1013
#: the reason of a 1013 for a replica at ``ws_max_connections``
SERVER_FULL = "server full; reconnect later"

log = get_logger(__name__)


async def project_socket(websocket: WebSocket) -> None:
    """Live changes of one project."""
    state = state_of(websocket)
    project_id: str = websocket.path_params["project_id"]
    with bound_context(project_id=project_id):
        async with _admitted(websocket, state) as admitted:
            if admitted is not None:
                await _serve_project(websocket, state, *admitted, project_id)


async def _serve_project(
    websocket: WebSocket,
    state: NotifierState,
    credential: Credential,
    key_slot: KeySlot,
    project_id: str,
) -> None:
    tenant_id = credential.tenant_id
    raw_after = websocket.query_params.get("after_seq")
    after_seq = _parse_seq(raw_after)
    if raw_after is not None and after_seq is None:
        await websocket.close(CLOSE_BAD_REQUEST, "after_seq must be an integer >= 0")
        return
    # Without after_seq the first message is a snapshot, whose read checks the same
    # (and closes with 4404): one read of the project per connection, not two.
    # A replay reads the event log, which does not know tenants: check first.
    if after_seq is not None:
        try:
            found = await _project_exists(state, project_id, tenant_id)
        except Exception:
            log.exception("ws_project_lookup_failed")
            await websocket.close(CLOSE_SERVER_ERROR, "server error; reconnect later")
            return
        if not found:
            await websocket.close(CLOSE_NOT_FOUND, "project not found")
            return
    session = _session(websocket, state, tenant_id, key_slot, close_when_gone=True)
    session.watch(project_id, after_seq)
    log.info("ws_opened", after_seq=after_seq)
    with state.key_watch.watching(credential, session):
        await session.serve()


async def multiplex_socket(websocket: WebSocket) -> None:
    """Live changes of the projects the client subscribes to."""
    state = state_of(websocket)
    async with _admitted(websocket, state) as admitted:
        if admitted is not None:
            await _serve_multiplexed(websocket, state, *admitted)


async def _serve_multiplexed(
    websocket: WebSocket, state: NotifierState, credential: Credential, key_slot: KeySlot
) -> None:
    session = _session(websocket, state, credential.tenant_id, key_slot, close_when_gone=False)
    subscriptions = Subscriptions(
        session,
        tenant_id=credential.tenant_id,
        projects=state.projects,
        limit=state.settings.ws_max_subscriptions,
        subscribes=TokenBucket(
            state.settings.ws_subscribe_rate_per_s, state.settings.ws_subscribe_burst
        ),
        key_slot=key_slot,
    )
    log.info("ws_opened", multiplexed=True)
    with state.key_watch.watching(credential, session):
        await session.serve(subscriptions.handle)


Endpoint = Callable[[WebSocket], Awaitable[None]]


def _counted(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` for a socket this replica has room for, which holds its place until it
    closes; one past ``ws_max_connections`` is closed with 1013 before its key is looked up.

    The process's GC policy (if any) is told of every socket opened and closed,
    refused ones included (their handshakes leave garbage too).
    """

    async def counted(websocket: WebSocket) -> None:
        state = state_of(websocket)
        policy = state.gc_policy
        if policy is not None:
            policy.opened()
        try:
            with state.connections.holding() as admitted:
                if admitted:
                    await endpoint(websocket)
                else:
                    await _refuse_full(websocket, state)
        finally:
            if policy is not None:
                policy.closed()

    return counted


async def _refuse_full(websocket: WebSocket, state: NotifierState) -> None:
    """Close a socket past ``ws_max_connections`` with 1013, having read nothing for it."""
    WS_REFUSALS_TOTAL.labels(limit="connections").inc()
    state.full_log.emit("replica", cap=state.connections.cap)
    await websocket.accept()
    await websocket.close(CLOSE_TRY_AGAIN_LATER, SERVER_FULL)


async def no_such_socket(websocket: WebSocket) -> None:
    """Any other path: a 404 problem+json naming the paths served (Starlette's answer was a
    bare 403, which reads as a refused key)."""
    await refuse_handshake(
        websocket,
        404,
        "Not Found",
        f"No WebSocket at {websocket.url.path}: connect to /v1/ws or"
        " /v1/ws/projects/{project_id}.",
    )


def routes() -> list[WebSocketRoute]:
    return [
        WebSocketRoute("/v1/ws/projects/{project_id}", _counted(project_socket)),
        WebSocketRoute("/v1/ws", _counted(multiplex_socket)),
    ]


def not_served() -> WebSocketRoute:
    """Every other WebSocket path (an HTTP route never matches one): the app's last route."""
    return WebSocketRoute("/{path:path}", no_such_socket)


@asynccontextmanager
async def _admitted(
    websocket: WebSocket, state: NotifierState
) -> AsyncIterator[tuple[Credential, KeySlot] | None]:
    """The accepted client's credential and its share of its key; None: it was closed."""
    credential = await _accept(websocket, state)
    if credential is None:
        yield None
        return
    with (
        bound_context(tenant_id=credential.tenant_id),
        state.key_slots.holding(credential.api_key) as key_slot,
    ):
        if key_slot is None:
            WS_REFUSALS_TOTAL.labels(limit="key_connections").inc()
            full_key = key_id(credential.api_key)
            state.key_full_log.emit(full_key, key_id=full_key, cap=state.key_slots.cap)
            await websocket.close(
                CLOSE_TOO_MANY_CONNECTIONS,
                f"this API key has {state.key_slots.cap} connections open on this server;"
                " close some, or reconnect later",
            )
            yield None
            return
        yield credential, key_slot


async def _accept(websocket: WebSocket, state: NotifierState) -> Credential | None:
    """Accept, then the credential; a client without a valid one is closed with 4401."""
    await websocket.accept()
    try:
        credential = await authenticate(websocket, state.api_keys, state.tickets)
    except KeyLookupsBusy:
        WS_REFUSALS_TOTAL.labels(limit="key_lookups").inc()
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "server busy; reconnect later")
        return None
    except Exception:
        log.exception("ws_authentication_failed")
        await websocket.close(CLOSE_SERVER_ERROR, "server error; reconnect later")
        return None
    if credential is None:
        presented = _presented(websocket)
        state.unauthorized_log.emit(presented.get("key_id") or presented["credential"], **presented)
        await websocket.close(CLOSE_UNAUTHORIZED, "missing or unknown API key or ticket")
    return credential


def _presented(websocket: WebSocket) -> dict[str, str]:
    """How a refused client presented itself, never the credential: the way it came, and a
    key's id (``key list`` shows it: a revoked or expired key is told apart so)."""
    if websocket.query_params.get("ticket") and "authorization" not in websocket.headers:
        return {"credential": "ticket"}
    way = "header" if "authorization" in websocket.headers else "token"
    key = presented_key(websocket)
    if key is None:
        return {"credential": way if way == "header" else "none"}
    return {"credential": way, "key_id": key_id(key)}


async def _project_exists(state: NotifierState, project_id: str, tenant_id: str) -> bool:
    """Whether the tenant has this project; nothing of it stays referenced.

    A local of the endpoint lives as long as its socket: holding the project
    there kept every watcher's copy of it (all clips, the event log) alive.
    """
    # Another tenant's project reads as missing, so ids cannot be probed.
    return await state.projects.get(project_id, tenant_id=tenant_id) is not None


def _session(
    websocket: WebSocket,
    state: NotifierState,
    tenant_id: str,
    key_slot: KeySlot,
    *,
    close_when_gone: bool,
) -> Session:
    return Session(
        websocket,
        tenant_id=tenant_id,
        projects=state.projects,
        replays=state.replays,
        hub=state.hub,
        max_backlog=state.settings.ws_max_backlog,
        close_when_gone=close_when_gone,
        links=state.links,
        key_slot=key_slot,
    )


def _parse_seq(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)
