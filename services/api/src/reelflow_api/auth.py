"""Who calls: the API key of a request to a route that needs one, checked before its body is read.

A route needs a key when it takes the caller's grant (:data:`~reelflow_api.deps.TenantGrant`,
:data:`~reelflow_api.deps.TenantId`, both :func:`caller_grant`). :class:`Authentication`
answers a request to such a route ``401`` problem+json at once when it has no
``Authorization: Bearer`` key, or an unknown, revoked or expired one: before its body
is read or parsed, so that a client without a valid key cannot hold an in-flight slot
by sending a body slowly, nor make the API parse one. The routes read the caller it
found with :func:`caller`; nothing else looks a key up.

It runs inside :class:`~reelflow_api.middleware.InFlightLimit`: looking a key up (in
memory, or one MongoDB read when the cache has not got it) is work that limit bounds,
so a burst of requests with keys the cache has not got cannot start unbounded reads.
Once its key is known, a request is counted for its tenant
(:func:`~reelflow_api.middleware.hold_for_tenant`): a tenant with several keys holds at
most ``max_in_flight_per_tenant`` slots, the next request answered ``429`` at once.
A key is read once however many of its requests arrive meanwhile (they wait for that
read), and at most ``auth_key_lookups_at_once`` (8) keys not known to be valid are
being read at once; a request with one more such key is answered ``503`` with
``Retry-After`` at once (:class:`~reelflow_common.store.KeyLookupsBusy`) rather than
waiting in its slot for a turn. A request refused here gives its slot back at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from reelflow_api.bearer import request_key
from reelflow_api.matching import matched
from reelflow_api.middleware import SHED_TOTAL, hold_for_tenant
from reelflow_api.problems import (
    RETRY_AFTER_OVERLOADED_S,
    Problem,
    backing_service_unavailable,
    problem_response,
    unavailable,
)
from reelflow_common.store import ApiKeyStore, KeyLookupsBusy
from reelflow_common.store.auth import Grant
from reelflow_common.transient import BACKING_SERVICE_ERRORS

#: where a request's caller is kept in its ASGI scope
_CALLER_KEY = "reelflow.caller"


@dataclass(frozen=True)
class Caller:
    """An authenticated request's API key, and what the key grants."""

    key: str
    grant: Grant


class Authentication:
    """Requests to a route that needs an API key carry a valid one, or are answered 401 at once."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[BaseRoute],
        key_store: Callable[[], ApiKeyStore],
    ) -> None:
        self.app = app
        # The router's own list, read per request: routes added after this is built count.
        self._routes = routes
        #: the keys, read per request (the lifespan builds the store after this)
        self._key_store = key_store
        #: whether each route taken so far needs a key, by id: its dependencies are walked
        #: once, not per request (the route is kept, so its id is never another's)
        self._needs_key: dict[int, tuple[BaseRoute, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._needs_api_key(matched(self._routes, scope).route):
            await self.app(scope, receive, send)
            return
        try:
            found = await authenticate(self._key_store(), scope)
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        except KeyLookupsBusy:
            SHED_TOTAL.inc()
            await problem_response(_lookups_busy())(scope, receive, send)
            return
        except BACKING_SERVICE_ERRORS as exc:
            await problem_response(backing_service_unavailable(exc))(scope, receive, send)
            return
        # Its tenant known: counted for it too, however many keys it has (its body not read).
        busy = hold_for_tenant(scope, found.grant.tenant_id)
        if busy is not None:
            await problem_response(busy)(scope, receive, send)
            return
        scope[_CALLER_KEY] = found
        await self.app(scope, receive, send)

    def _needs_api_key(self, route: BaseRoute | None) -> bool:
        if route is None:
            return False
        known = self._needs_key.get(id(route))
        if known is None:
            known = self._needs_key[id(route)] = (route, needs_api_key(route))
        return known[1]


async def authenticate(keys: ApiKeyStore, scope: Scope) -> Caller:
    """The caller, by the request's ``Authorization: Bearer`` key; a 401 without one, or for a
    key that is unknown, revoked or expired."""
    key = request_key(scope)
    if key is None:
        raise _unauthorized("Send your API key as 'Authorization: Bearer <key>'.")
    grant = await keys.cached_grant(key)
    if grant is None:
        raise _unauthorized("Unknown API key.")
    return Caller(key, grant)


def caller(request: Request) -> Caller:
    """The caller :class:`Authentication` found for this request to a route that needs a key."""
    found = request.scope.get(_CALLER_KEY)
    if not isinstance(found, Caller):
        # Every request to such a route is authenticated before the route runs: a bug.
        raise RuntimeError(f"{request.url.path} needs an API key, and was not authenticated")
    return found


#: declares the scheme in the OpenAPI document (``/docs`` gets its Authorize button);
#: :class:`Authentication` reads the header, so that every refusal is the same problem+json
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="rf_…",
    description="An API key: `reelflow-admin key create` prints one (`make run` prints a dev key).",
)


async def caller_grant(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Grant:
    """The caller's tenant and its limits: a route that takes this needs an API key."""
    return caller(request).grant


def needs_api_key(route: BaseRoute | None) -> bool:
    """Whether requests to ``route`` must carry a valid API key: it takes :func:`caller_grant`,
    itself or through another dependency."""
    return isinstance(route, APIRoute) and _takes(route.dependant, caller_grant)


def _takes(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(sub.call is call or _takes(sub, call) for sub in dependant.dependencies)


def _lookups_busy() -> Problem:
    detail = (
        "Too many API keys this server has not seen yet are being checked at once;"
        " try again after Retry-After seconds."
    )
    return unavailable(detail, retry_after_s=RETRY_AFTER_OVERLOADED_S)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
