"""Every error answer is ``application/problem+json`` (RFC 9457), and only this module knows it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.store import IdempotencyConflict, InvalidCursor

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

_PROBLEM_SCHEMA: dict[str, Any] = {
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
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}

_MEANINGS = {
    401: "No API key, or an unknown one.",
    404: "No such resource (or it belongs to another tenant).",
    422: "Invalid request: `errors` names each bad field.",
    503: "A backing service is unavailable; try again after `Retry-After` seconds.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses as problem+json."""
    return {
        status: {
            "description": _MEANINGS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


class Problem(Exception):
    """An error answer: raise it from a route."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://reelflow.dev/problems/{problem.title.lower().replace(' ', '-')}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def not_found(what: str = "project") -> Problem:
    return Problem(404, "Not Found", f"No such {what}.")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "msg": err["msg"]} for err in exc.errors()]


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return problem_response(Problem(422, "Invalid Request", detail, errors=errors))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:  # a status code http.HTTPStatus does not know
            title = "Error"
        return problem_response(
            Problem(exc.status_code, title, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def on_idempotency(_: Request, exc: Exception) -> JSONResponse:
        detail = "Idempotency-Key was already used with a different request body."
        errors = [{"loc": ["header", "Idempotency-Key"], "msg": detail}]
        return problem_response(Problem(422, "Idempotency Conflict", detail, errors=errors))

    async def on_cursor(_: Request, exc: Exception) -> JSONResponse:
        errors = [{"loc": ["query", "cursor"], "msg": "not a cursor this API returned"}]
        return problem_response(
            Problem(422, "Invalid Request", "query.cursor: invalid cursor", errors=errors)
        )

    async def on_transient(_: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency_unavailable", error=str(exc))
        return problem_response(
            Problem(
                503,
                "Service Unavailable",
                "A backing service is unavailable; try again shortly.",
                headers={"Retry-After": "5"},
            )
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(IdempotencyConflict, on_idempotency)
    app.add_exception_handler(InvalidCursor, on_cursor)
    app.add_exception_handler(TransientError, on_transient)
    app.add_exception_handler(ConnectionFailure, on_transient)
