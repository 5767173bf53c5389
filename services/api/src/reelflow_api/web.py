"""Web basics every answer gets: security headers, CORS (off unless configured), the docs page.

* :class:`SecurityHeaders` adds ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer`` to every answer, and ``Cache-Control:
  no-store`` to every answer that set no caching of its own (the API's JSON,
  its errors and the probes: a status read once is stale the next second).
* :func:`install_cors` lets the origins of ``cors_allow_origins`` call the API
  from a browser, with the headers of :data:`CORS_ALLOW_HEADERS` and those of
  ``cors_allow_headers``; with none (the default) no CORS header is ever sent. A
  preflight it refuses is a problem+json naming what was not allowed, CORS on
  or off (off, the route's 405 said nothing of CORS).
* :class:`NoWebSockets` answers a WebSocket handshake (the notifier serves
  them) with a 404 problem+json saying where they are, with the headers every
  answer has (and its ``X-Correlation-ID``): the HTTP middleware never sees it.
* :func:`install_docs` serves Swagger UI at ``/docs`` from files in an installed
  package (``fastapi-offline``), never from a CDN, under a CSP that allows only
  those files and the page's one inline script (by its hash).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from reelflow_api.problems import Problem, problem_response
from reelflow_api.telemetry import adopted_correlation_id
from reelflow_common.problem_json import refuse_handshake
from reelflow_common.topology import HTTP_CORRELATION_ID

DOCS_PATH = "/docs"
#: Swagger UI's script, styles and icon, as the ``fastapi-offline`` package ships them
DOCS_ASSETS_PATH = "/docs-assets"
_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

#: the request headers a page on an allowed origin may always send (a preflight asking any
#: other is refused; ``cors_allow_headers`` adds more): the API's own, a conditional GET's,
#: and those browser tracing adds to every request (W3C Trace Context and Baggage), so that
#: an app with tracing on is not refused every call
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    HTTP_CORRELATION_ID,
    "If-None-Match",
    "traceparent",
    "tracestate",
    "baggage",
]


class SecurityHeaders:
    """The headers above, on every HTTP answer (problem+json and 503s from other layers too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS:
                    headers.setdefault(name.decode(), value.decode())
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class NoWebSockets:
    """A WebSocket handshake is refused with a 404 problem+json naming where WebSockets are:
    the API has none (a client that dialled the API's URL got Starlette's bare 403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        headers = {name.decode(): value.decode() for name, value in _ALWAYS}
        headers["Cache-Control"] = "no-store"
        headers[HTTP_CORRELATION_ID] = adopted_correlation_id(Headers(scope=scope))
        await refuse_handshake(
            WebSocket(scope, receive, send),
            404,
            "Not Found",
            "No WebSocket on the API: the notifier serves them, at ws_url of GET /v1/config.",
            headers=headers,
        )


class ProblemCors(CORSMiddleware):
    """Starlette's CORS, but a preflight it refuses is a 400 problem+json that says what was not
    allowed (Starlette's is ``text/plain`` 'Disallowed CORS origin'). An allowed preflight is
    answered as Starlette answers it.

    ``off`` (no origin configured): every preflight is refused so, with no CORS header, and
    every other request passes untouched, as without CORS. A browser shows neither status,
    but its network panel shows the body: "origin … is not allowed" says what to do, where
    the route's 405 ``Allow: GET, POST`` sent a developer after the wrong method.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        off: bool,
        allow_origins: Sequence[str],
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        expose_headers: Sequence[str],
        max_age: int,
    ) -> None:
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )
        self._off = off

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._off and not (scope["type"] == "http" and _is_preflight(scope)):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-type", "content-length")
            and not (self._off and name.startswith("access-control-"))
        }
        refused = "; ".join(self._refused(request_headers))
        off = " (CORS is off on this API: no origin is allowed)" if self._off else ""
        detail = f"CORS preflight refused: {refused}{off}."
        return problem_response(
            Problem(response.status_code, "Bad Request", detail, headers=headers)
        )

    def _refused(self, request_headers: Headers) -> list[str]:
        """What the preflight asked that is not allowed, each in a few words."""
        refused: list[str] = []
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin):
            refused.append(f"origin {origin} is not allowed")
        method = request_headers["access-control-request-method"]
        if method not in self.allow_methods:
            allowed = ", ".join(self.allow_methods)
            refused.append(f"method {method} is not allowed (allowed: {allowed})")
        asked = request_headers.get("access-control-request-headers")
        names = [] if asked is None else [name.strip().lower() for name in asked.split(",")]
        # Starlette refuses an empty name too ("a,,b", or the header sent empty).
        if not_allowed := [name or '""' for name in names if name not in self.allow_headers]:
            refused.append(
                f"{'header' if len(not_allowed) == 1 else 'headers'} {', '.join(not_allowed)}"
                f" {'is' if len(not_allowed) == 1 else 'are'} not allowed"
            )
        if "access-control-request-private-network" in request_headers:
            refused.append("private network access is not allowed")
        return refused


def _is_preflight(scope: Scope) -> bool:
    """As Starlette tells one: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``."""
    if scope["method"] != "OPTIONS":
        return False  # every other request, without reading its headers
    headers = Headers(scope=scope)
    return "origin" in headers and "access-control-request-method" in headers


def install_cors(app: FastAPI, origins: list[str], extra_headers: Sequence[str] = ()) -> None:
    """Answer CORS preflights and requests from these origins, allowing the request headers of
    :data:`CORS_ALLOW_HEADERS` and ``extra_headers``; without any origin, refuse every
    preflight (a problem+json) and send no CORS header."""
    app.add_middleware(
        ProblemCors,
        off=not origins,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=[*CORS_ALLOW_HEADERS, *extra_headers],
        expose_headers=[
            "Location",
            "Retry-After",
            HTTP_CORRELATION_ID,
            "ETag",
            "Idempotency-Replayed",
        ],
        max_age=600,
    )


class FilesWithHeaders(StaticFiles):
    """Static files from ``directory``, each answered with ``headers``."""

    def __init__(self, directory: Path, headers: Mapping[str, str]) -> None:
        super().__init__(directory=directory)
        self._headers = dict(headers)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(self._headers)
        return response


def install_docs(app: FastAPI) -> None:
    """``/docs`` and its assets; the app must be built with ``docs_url=None, redoc_url=None``."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} API",
        swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
        # The public validator would be asked about our document (and is off the CSP).
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )
    body = bytes(page.body)
    headers = docs_security_headers(body.decode())

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(body, headers=headers)

    # Revalidated (ETag), like the dashboard's files.
    assets = FilesWithHeaders(_ASSETS_DIR, {"Cache-Control": "no-cache"})
    app.mount(DOCS_ASSETS_PATH, assets, name="docs-assets")


def docs_security_headers(html: str) -> dict[str, str]:
    """The page may run the bundled Swagger UI and its own inline start-up script, nothing else.

    Swagger UI sets style attributes as it renders, hence ``'unsafe-inline'``
    for styles only; it calls the API on this origin (``connect-src 'self'``).
    """
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY"}
