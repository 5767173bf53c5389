"""What the API tells operators about each request, as ASGI middleware around every route.

* :class:`CorrelationId` gives each request its correlation id: the client's
  ``X-Correlation-ID`` when it is a plausible id, else a fresh one. It is bound
  into every log line of the request, returned in the response's header, and
  read by the routes with :func:`correlation_id` to put into the messages they
  publish, whose consumers bind it into their own log lines.
* :class:`HttpTelemetry` counts requests and times them per route
  (``reelflow_http_requests_total``, ``reelflow_http_request_seconds``) and
  opens the request's server span, the root of its trace. Routes are labelled
  by their template (``/v1/projects/{project_id}``), never the raw path: the
  label set stays small whatever clients send, and the webhook's secret path
  segment never reaches a label or a span name.

Both are outermost (see ``create_app``): a request shed with 503 or refused
with 413 is counted, traced and carries its id too.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelflow_api.matching import matched, path_of
from reelflow_common.logging import bound_context
from reelflow_common.topology import HTTP_CORRELATION_ID
from reelflow_common.tracing import SpanKind, extract, mark_error, span

#: where the request's correlation id is kept in its ASGI scope
_SCOPE_KEY = "reelflow.correlation_id"
#: an id a client may choose: short, and nothing a log line or a header could choke on
_PLAUSIBLE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
#: methods labelled as themselves; anything else is ``other``
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS_TOTAL = Counter(
    "reelflow_http_requests_total",
    "HTTP requests answered by the API, by method, route template and status code.",
    ["method", "route", "status"],
)

HTTP_REQUEST_SECONDS = Histogram(
    "reelflow_http_request_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template"
    " (a POST with ?wait= included).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


def correlation_id(request: Request) -> str | None:
    """The correlation id :class:`CorrelationId` gave this request (None outside it)."""
    value = request.scope.get(_SCOPE_KEY)
    return value if isinstance(value, str) else None


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def adopted_correlation_id(headers: Headers) -> str:
    """The request's ``X-Correlation-ID`` if it is a usable one, else a new id (never refused)."""
    given = headers.get(HTTP_CORRELATION_ID)
    if given is not None and _PLAUSIBLE_ID.fullmatch(given):
        return given
    return new_correlation_id()


class CorrelationId:
    """Adopts the client's ``X-Correlation-ID`` (or makes one) and returns it in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = adopted_correlation_id(Headers(scope=scope))
        scope[_SCOPE_KEY] = value

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HTTP_CORRELATION_ID] = value
            await send(message)

        with bound_context(correlation_id=value):
            await self.app(scope, receive, send_with_id)


class HttpTelemetry:
    """Per-route request count and latency, and the request's server span."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        # The router's own list, read per request: routes added after this is built count.
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "other"
        # As the request arrived (a Mount rewrites the scope's paths on the way in), and once
        # for the middleware inside this one too.
        arrived = matched(self._routes, scope)
        status = 500  # unless the app starts an answer: an exception that escaped everything
        started = time.perf_counter()

        async def send_watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes: dict[str, str | int | float | bool] = {"http.request.method": method}
        if (given := scope.get(_SCOPE_KEY)) is not None:
            attributes["reelflow.correlation_id"] = given
        # Named once the route is known, after the request.
        with span(
            method,
            kind=SpanKind.SERVER,
            parent=extract(Headers(scope=scope)),
            attributes=attributes,
        ) as current:
            try:
                await self.app(scope, receive, send_watched)
            finally:
                # FastAPI names the route it took; for anything else (a Starlette route, a
                # request refused before routing: a 503, a 413) the match on arrival does.
                route = path_of(scope.get("route")) or arrived.template
                current.update_name(f"{method} {route}")
                current.set_attribute("http.route", route)
                current.set_attribute("http.response.status_code", status)
                if status >= 500:
                    mark_error(current, f"HTTP {status}")
                HTTP_REQUESTS_TOTAL.labels(method=method, route=route, status=str(status)).inc()
                HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(
                    time.perf_counter() - started
                )
