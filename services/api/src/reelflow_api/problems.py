"""Every error answer is ``application/problem+json`` (RFC 9457), and this module makes the
HTTP ones (the members every problem has, and a refused WebSocket handshake's, are in
:mod:`reelflow_common.problem_json`, which the notifier shares)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from reelflow_api.validation import said
from reelflow_common.accounting import LimitExceeded
from reelflow_common.accounting.limits import Limit
from reelflow_common.logging import get_logger
from reelflow_common.problem_json import PROBLEM_JSON, problem_body
from reelflow_common.store import IdempotencyConflict, InvalidCursor
from reelflow_common.store.timefmt import rfc3339
from reelflow_common.transient import BACKING_SERVICE_ERRORS, is_transient

log = get_logger(__name__)

#: the bad fields a 422 lists in ``errors``; ``errors_omitted`` counts the rest. The first few say
#: what to fix, and a body with thousands of mistakes costs no more to answer than one with twenty.
MAX_LISTED_ERRORS = 20

#: seconds a client should wait after a 503: the API was full (it drains in moments) ...
RETRY_AFTER_OVERLOADED_S = 1
#: ... or a backing service did not answer (a restart or a failover takes longer)
RETRY_AFTER_UNAVAILABLE_S = 5
#: ... and after a 409 for a twin (a concurrent retry): the first request's insert (the
#: retry's writes of its clips) lands within moments
RETRY_AFTER_IN_PROGRESS_S = 1

#: the OpenAPI schema of every error answer (``components.schemas.Problem``)
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": f"422: each bad field, the first {MAX_LISTED_ERRORS} of them",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "allowed": {
                        "type": "array",
                        "description": "what the scene's model accepts for this field",
                        "items": {"type": ["string", "integer", "number"]},
                    },
                },
            },
        },
        "errors_omitted": {
            "type": "integer",
            "minimum": 1,
            "description": f"422: bad fields past the first {MAX_LISTED_ERRORS}, not listed in"
            " `errors` (absent when it lists every one)",
        },
        "limit": {
            "type": "string",
            "enum": [limit.value for limit in Limit],
            "description": "402, 403, 429: the tenant's limit that refused the request",
        },
        "limit_value": {
            "type": ["number", "integer", "array", "null"],
            "items": {"type": "string"},
            "description": "that limit's value (a list for allowed_models)",
        },
        "resets_at": {
            "type": "string",
            "format": "date-time",
            "description": "402: when the budget's period starts afresh",
        },
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}
#: the headers an error answer of a status carries
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}},
    },
    402: _RETRY_AFTER,
    409: _RETRY_AFTER,
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}

#: the 429 of the in-flight limits (:class:`~reelflow_api.middleware.InFlightLimit`), which any
#: request but the probes' may get: one with an API key when that key, or its tenant, has too
#: many requests in progress
IN_FLIGHT_TOO_MANY = (
    "This API key, or its tenant (all its keys together), has too many requests in progress"
    " (no `limit`); retry after `Retry-After`."
)

_MEANINGS = {
    401: "No API key, or an unknown one.",
    408: "The request body did not arrive within `REELFLOW_HTTP_BODY_TIMEOUT_S` (30 s by"
    " default) of the request's start; the connection is closed.",
    402: "The tenant's spending budget has no room for this; `limit` names it, `resets_at` when.",
    403: "The tenant's limits do not allow this (a model, scenes per project, or more than a"
    " whole limit at once); `limit` names it.",
    404: "No such resource (or it belongs to another tenant).",
    409: "A request with this Idempotency-Key (a retry: another retry of this project) is in"
    " progress; retry after `Retry-After` for its answer.",
    413: "The request body is larger than the API accepts.",
    422: f"Invalid request: `errors` names each bad field (the first {MAX_LISTED_ERRORS};"
    " `errors_omitted` counts the rest).",
    429: "The tenant has too many clips in flight; `limit` names it; retry after `Retry-After`.",
    503: "Too busy, a backing service is unavailable, or (a retry or cancel) a clip kept"
    " changing as it was written; retry after `Retry-After` seconds.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses as problem+json."""
    return {
        status: {
            "description": _MEANINGS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status in statuses
    }


class Problem(StarletteHTTPException):
    """An error answer: raise it from a route, a dependency, or a middleware's ``receive``.

    An ``HTTPException`` so that it passes through FastAPI's body parsing, which
    turns any other error raised while reading the body into a bare 400.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, detail, headers)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers
        #: RFC 9457 extension members: more about this problem, e.g. which limit
        self.extensions = extensions or {}


def problem_response(problem: Problem) -> JSONResponse:
    body = problem_body(problem.status, problem.title, problem.detail)
    if problem.errors is not None:
        body["errors"] = problem.errors
    body |= problem.extensions
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def invalid_request(errors: Sequence[dict[str, Any]], *, total: int | None = None) -> Problem:
    """A 422 listing the first :data:`MAX_LISTED_ERRORS` of ``errors``, its ``detail`` the first.

    ``total``: how many errors there were, when ``errors`` holds only the first of
    them (the rest were not worth putting into words); ``errors_omitted`` says how
    many were left out.
    """
    listed = list(errors[:MAX_LISTED_ERRORS])
    first = listed[0] if listed else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    omitted = (len(errors) if total is None else total) - len(listed)
    extensions = {"errors_omitted": omitted} if omitted > 0 else None
    return Problem(422, "Invalid Request", detail, errors=listed, extensions=extensions)


def not_found(what: str = "project") -> Problem:
    return Problem(404, "Not Found", f"No such {what}.")


def unavailable(detail: str, *, retry_after_s: int = RETRY_AFTER_UNAVAILABLE_S) -> Problem:
    """A 503 that tells the client when to try again."""
    return Problem(503, "Service Unavailable", detail, headers={"Retry-After": str(retry_after_s)})


def clips_busy(clips: int, *, done: str) -> Problem:
    """503: a retry or cancel left ``clips`` clips as they were, each moved by another writer
    at every try (``Outcome.busy``); sent again, what it did stays done and these go then."""
    return Problem(
        503,
        "Service Unavailable",
        f"{clips} clip(s) kept changing while this request wrote them and were not {done};"
        " send the request again (what it did stays done).",
        headers={"Retry-After": str(RETRY_AFTER_OVERLOADED_S)},
    )


def request_in_progress() -> Problem:
    """409: a request with this one's Idempotency-Key is still creating its project, whose
    answer this one gets once it is stored (a replay), as Stripe answers such a twin."""
    return Problem(
        409,
        "Request In Progress",
        "A request with this Idempotency-Key is in progress; retry after Retry-After seconds"
        " for its answer.",
        headers={"Retry-After": str(RETRY_AFTER_IN_PROGRESS_S)},
    )


def retry_in_progress() -> Problem:
    """409: another retry of this project holds the room in the tenant's limits that this
    one was refused for, and has not written its clips yet: once it has, this one's answer is
    that it has nothing to do (``clips_changed`` 0), or a judgement on the room alone."""
    return Problem(
        409,
        "Request In Progress",
        "Another retry of this project is in progress and holds the room in the tenant's"
        " limits; retry after Retry-After seconds for this one's answer.",
        headers={"Retry-After": str(RETRY_AFTER_IN_PROGRESS_S)},
    )


def backing_service_unavailable(exc: Exception) -> Problem:
    """The 503 of a request that a backing service failed (MongoDB, RabbitMQ, an HTTP call),
    logged: a warning when it is unreachable, an error when it refused."""
    error = f"{type(exc).__name__}: {exc}"
    if is_transient(exc):
        log.warning("dependency_unavailable", error=error)
    else:  # refused rather than unreachable (a write concern, an operation failure)
        log.error("dependency_failed", error=error, exc_info=exc)
    return unavailable("A backing service is unavailable; try again shortly.")


def limit_exceeded(exc: LimitExceeded, *, now: datetime) -> Problem:
    """402 for a budget, 429 for clips in flight (both pass), 403 for what waiting cannot fix
    (a model or a size not allowed, or a request past a whole limit on its own)."""
    extensions: dict[str, Any] = {"limit": exc.limit.value, "limit_value": exc.value}
    headers: dict[str, str] = {}
    if exc.resets_at is not None:
        extensions["resets_at"] = rfc3339(exc.resets_at)
        headers["Retry-After"] = str(max(1, math.ceil((exc.resets_at - now).total_seconds())))
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if exc.is_budget and exc.resets_at is not None:
        status, title = 402, "Budget Exceeded"
    elif exc.retry_after_s is not None:
        status, title = 429, "Limit Exceeded"
    else:
        status, title = 403, "Not Allowed"
    return Problem(status, title, exc.detail, headers=headers or None, extensions=extensions)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes: Starlette's 405 names only the first
    route's (``/v1/projects`` is a GET route and a POST route). Empty for a mount (its
    static files name their own)."""
    methods: set[str] = set()
    for route in _every_route(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _every_route(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes, those of included routers too (FastAPI keeps each router included whole)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from _every_route(included.routes) if included is not None else (route,)


def _is_unparsable_body(exc: StarletteHTTPException) -> bool:
    """FastAPI's answer to a JSON body Python's ``json`` cannot read for a reason other than its
    syntax (bytes that are not UTF-8, nesting too deep, an integer too long): a 400 raised from
    the parser's error. Syntax errors are validation errors (422) already; so are these."""
    return exc.status_code == 400 and isinstance(
        exc.__cause__,
        ValueError | RecursionError,  # UnicodeDecodeError is a ValueError
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        content_type = request.headers.get("content-type")
        errors = exc.errors()
        listed = said(errors[:MAX_LISTED_ERRORS], content_type=content_type, body=exc.body)
        return problem_response(invalid_request(listed, total=len(errors)))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            exc.headers = {**(exc.headers or {}), "Allow": allowed}
        if _is_unparsable_body(exc):
            msg = (
                "not JSON this API can read (bytes not UTF-8, nesting too deep, a number too long)"
            )
            errors = [{"loc": ["body"], "msg": msg}]
            return problem_response(Problem(422, "Invalid Request", f"body: {msg}", errors=errors))
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:  # a status code http.HTTPStatus does not know
            title = "Error"
        return problem_response(
            Problem(exc.status_code, title, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def on_idempotency(_: Request, exc: Exception) -> JSONResponse:
        detail = "Idempotency-Key was already used with a different request body."
        # As FastAPI names a header in every other error: lower case.
        errors = [{"loc": ["header", "idempotency-key"], "msg": detail}]
        return problem_response(Problem(422, "Idempotency Conflict", detail, errors=errors))

    async def on_cursor(_: Request, exc: Exception) -> JSONResponse:
        said = str(exc)  # InvalidCursor's messages are written for the client
        errors = [{"loc": ["query", "cursor"], "msg": said}]
        return problem_response(
            Problem(422, "Invalid Request", f"query.cursor: {said}", errors=errors)
        )

    async def on_backing_service(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(backing_service_unavailable(exc))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug. Starlette logs the traceback once this answer is sent.
        return problem_response(
            Problem(500, "Internal Server Error", "The server failed to answer this request.")
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(IdempotencyConflict, on_idempotency)
    app.add_exception_handler(InvalidCursor, on_cursor)
    for error_type in BACKING_SERVICE_ERRORS:
        app.add_exception_handler(error_type, on_backing_service)
    app.add_exception_handler(Exception, on_unexpected)
