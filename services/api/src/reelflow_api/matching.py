"""The route a request is for, as the middleware that acts before routing needs it: matched once.

Telemetry labels a request by its route's template, authentication asks whether the
route needs a key, the body limit reads the model it parses a body into. Each matched
the routes on its own (three matches per request before FastAPI's own); now the first
to ask matches them and keeps the answer in the request's ASGI scope for the others.
Middleware acts before a Mount rewrites the scope's paths, so all of them see the
request as it arrived.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

#: where a request's match is kept in its ASGI scope
_SCOPE_KEY = "reelflow.matched"
#: the route label of a path that no route matches (a 404)
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class Matched:
    """What the routes make of a request."""

    #: the route the router will give it to: the first that matches path and method; None
    #: for a 404 or a 405
    route: BaseRoute | None
    #: the path template of that route, else of the first that matches the path only (a 405
    #: names its route), else ``unmatched``
    template: str


def matched(routes: Sequence[BaseRoute], scope: Scope) -> Matched:
    """The routes' match for this request: made by the first middleware that asks, kept."""
    found = scope.get(_SCOPE_KEY)
    if not isinstance(found, Matched):
        found = scope[_SCOPE_KEY] = _match(routes, scope)
    return found


def _match(routes: Sequence[BaseRoute], scope: Scope) -> Matched:
    partial: BaseRoute | None = None
    for route in flattened_routes(routes):
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return Matched(route, path_of(route) or UNMATCHED)
        if match is Match.PARTIAL and partial is None:
            partial = route
    return Matched(None, path_of(partial) or UNMATCHED)


def flattened_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """``routes`` with the routes of included routers in their place.

    Recent FastAPI keeps an included router as one entry (``original_router``)
    that matches without naming the route it took; where that shape is unknown,
    the route FastAPI puts in the scope names it after the request.
    """
    for route in routes:
        inner = getattr(route, "original_router", None)
        inner_routes = getattr(inner, "routes", None)
        if isinstance(inner_routes, list):
            yield from flattened_routes(inner_routes)
        else:
            yield route


def path_of(route: object) -> str | None:
    """A route's path template; None for no route, or one without a path."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else None
