"""The OpenAPI document: FastAPI's, plus what the routes alone cannot say.

* ``?wait=``'s maximum is the ``max_wait_s`` setting, read when the document is built;
* the answers the middleware gives before any route runs, on every operation they may
  come from (:func:`_middleware_answers`): the in-flight limits' ``429`` and ``503`` on
  every one but the probes', the body's ``408`` and ``413`` on every one that takes a body;
* a project status (and the models in it) is described as written: no ``null``, and the
  members with a value by default required (:data:`WRITTEN_WITHOUT_NULLS`);
* the operations routes (``/healthz``, ``/readyz``, ``/metrics``) are Starlette
  routes shared with the workers; their answers are described here from the
  models in :mod:`reelflow_common.ops`.

``docs/openapi.json`` is this document for the default settings
(``python -m reelflow_devtools.contracts`` writes it; a test fails on drift).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from reelflow_api.problems import IN_FLIGHT_TOO_MANY, PROBLEM_SCHEMA, problem_responses
from reelflow_api.settings import Settings
from reelflow_common.json_schema import as_written
from reelflow_common.ops import Health, Readiness

_REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the completed document."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            _bound_wait(document, settings.max_wait_s)
            _as_written(document["components"]["schemas"])
            _middleware_answers(document)  # before the probes', which the middleware spares
            _add_ops_paths(document)
            document["components"]["schemas"]["Problem"] = PROBLEM_SCHEMA
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


#: the answers written without ``null``s (``ProjectStatusView.wire``: ``exclude_none``), and
#: the models in them; every other answer is written as FastAPI writes it
WRITTEN_WITHOUT_NULLS = (
    "ProjectStatusView",
    "ProjectChanged",
    "ProjectCancelled",
    "ClipView",
    "AttemptView",
    "CostTotals",
    "ProjectScenesView",
    "SceneView",
)


def _as_written(schemas: dict[str, Any]) -> None:
    """Those answers' schemas as their JSON holds them (:func:`as_written`): ``success`` always
    there, ``results`` an array when there (list items leave it out), never ``null``."""
    as_written({name: schemas[name] for name in WRITTEN_WITHOUT_NULLS if name in schemas})


def _bound_wait(document: dict[str, Any], max_wait_s: float) -> None:
    for parameter in document["paths"]["/v1/projects"]["post"]["parameters"]:
        if parameter["name"] == "wait":
            parameter["schema"]["maximum"] = max_wait_s


def _middleware_answers(document: dict[str, Any]) -> None:
    """Add what the middleware answers before a route runs to every operation it may come from
    (an operation that documents a status already keeps its description, the in-flight 429's
    added to it).

    * ``429`` and ``503`` (:class:`~reelflow_api.middleware.InFlightLimit`): every request
      but the probes' (not in this document yet) is counted; one with an API key, whatever
      the route, is refused ``429`` when its key or tenant has too many in progress.
    * ``408`` (:class:`~reelflow_api.slow_clients.BodyDeadline`) and ``413``
      (:class:`~reelflow_api.middleware.BodyLimit`): wherever a body is read, an operation
      with a ``requestBody``.
    """
    shared = problem_responses(408, 413, 429, 503)
    shared[429] = {**shared[429], "description": IN_FLIGHT_TOO_MANY}
    for operations in document["paths"].values():
        for operation in operations.values():
            answers: dict[str, Any] = operation["responses"]
            statuses = [429, 503] + ([408, 413] if "requestBody" in operation else [])
            for status in statuses:
                answers.setdefault(str(status), dict(shared[status]))
            too_many = answers["429"]
            if too_many["description"] != IN_FLIGHT_TOO_MANY:  # a route's own 429 as well
                too_many["description"] = f"{too_many['description']} Or: {IN_FLIGHT_TOO_MANY}"
            operation["responses"] = dict(sorted(answers.items()))


def _json(model: type[Health] | type[Readiness], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }


def _add_ops_paths(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Health, Readiness):
        schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
    ops = ["operations"]
    document["paths"]["/healthz"] = {
        "get": {
            "tags": ops,
            "summary": "Liveness",
            "operationId": "healthz",
            "responses": {"200": _json(Health, "The process is alive.")},
        }
    }
    document["paths"]["/readyz"] = {
        "get": {
            "tags": ops,
            "summary": "Readiness",
            "operationId": "readyz",
            "responses": {
                "200": _json(
                    Readiness,
                    "MongoDB answers and this replica's first RabbitMQ link has succeeded:"
                    " the API serves requests. `status` is `ok` when RabbitMQ answers too,"
                    " `degraded` while it does not (`checks` says so): creates still answer"
                    " 202, their clips dispatched by the reconciler, and webhooks 503.",
                ),
                "503": _json(
                    Readiness,
                    "MongoDB does not answer, or this replica has not linked to RabbitMQ"
                    " yet (or its link gave up); `checks` names which.",
                ),
            },
        }
    }
    document["paths"]["/metrics"] = {
        "get": {
            "tags": ops,
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
