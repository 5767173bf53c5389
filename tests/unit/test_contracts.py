"""The contracts in docs/ cannot drift from the code: AsyncAPI, OpenAPI and docs/API.md.

Regenerate the JSON documents with ``python -m reelflow_devtools.contracts``.
"""

from __future__ import annotations

import json
import re
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.routing import Mount, Route

from reelflow_api.app import create_app
from reelflow_api.json_values import more_separators_than
from reelflow_api.problems import Problem, limit_exceeded, problem_response
from reelflow_api.schemas import CreateProjectIn
from reelflow_api.settings import Settings as ApiSettings
from reelflow_common import topology
from reelflow_common.accounting import LimitExceeded
from reelflow_common.accounting.limits import Limit
from reelflow_common.client_json import most_separators
from reelflow_common.messages import (
    EVENT_TYPES,
    AttemptStored,
    AttemptSucceeded,
    ClipStored,
    ClipUpdated,
    Message,
    ProjectFinished,
)
from reelflow_common.store.models import ProjectStatusView
from reelflow_devtools.contracts import (
    CLOSE_CODES,
    COMMANDS,
    EVENTS,
    SIGNALS,
    asyncapi_document,
    generated,
    openapi_document,
    websocket_asyncapi_document,
)
from reelflow_notifier import keywatch, routes, session, wire
from reelflow_notifier.multiplex import Subscribe, Unsubscribe
from tests import ROOT

API_MD = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
REGENERATE = "run: .venv/bin/python -m reelflow_devtools.contracts"
ASYNCAPI_DOCUMENTS = {"rabbitmq": asyncapi_document, "websocket": websocket_asyncapi_document}


@pytest.mark.parametrize("path", list(generated()), ids=lambda p: p.name)
def test_the_committed_document_is_what_the_code_generates(path: Path) -> None:
    assert path.exists(), REGENERATE
    assert path.read_text(encoding="utf-8") == generated()[path], REGENERATE


def _all_subclasses(cls: type[Message]) -> set[type[Message]]:
    found: set[type[Message]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_the_asyncapi_document_has_every_message_type() -> None:
    document = asyncapi_document()
    concrete = {cls for cls in _all_subclasses(Message) if "message_type" in cls.__dict__}

    documented = {model for kinds, _, _ in COMMANDS.values() for model in kinds}
    documented |= set(EVENTS.values())
    documented |= set(SIGNALS.values())
    assert documented == concrete
    assert set(EVENTS) == set(EVENT_TYPES)
    assert set(COMMANDS) == set(topology.WORK_QUEUES)
    assert set(document["components"]["messages"]) == {cls.__name__ for cls in concrete}
    assert document["asyncapi"].startswith("3.")


@pytest.mark.parametrize("name", list(ASYNCAPI_DOCUMENTS))
def test_the_asyncapi_documents_are_valid_asyncapi_3(name: str) -> None:
    schema = json.loads((ROOT / "tests/fixtures/schemas/asyncapi-3.0.0.json").read_text())
    document = ASYNCAPI_DOCUMENTS[name]()
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(document)
    ]
    assert errors == []


def test_the_openapi_document_is_valid_openapi() -> None:
    validate(openapi_document())  # raises, naming what is wrong


def _literal(model: type[BaseModel]) -> str:
    (value,) = typing.get_args(model.model_fields["type"].annotation)
    return str(value)


def _websocket_message_types() -> set[str]:
    types = {_literal(model) for model in wire.SERVER_MESSAGES}
    types |= {_literal(Subscribe), _literal(Unsubscribe)}
    assert set(EVENT_TYPES) | {wire.SNAPSHOT, wire.ERROR, wire.UNSUBSCRIBED} <= types
    return types


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.parametrize("name", list(ASYNCAPI_DOCUMENTS))
def test_every_reference_in_the_asyncapi_documents_resolves(name: str) -> None:
    document = ASYNCAPI_DOCUMENTS[name]()
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_the_websocket_document_has_every_message_and_close_code() -> None:
    document = websocket_asyncapi_document()
    names = {message["name"] for message in document["components"]["messages"].values()}

    assert names == _websocket_message_types()
    assert set(document["channels"]["project"]["x-close-codes"]) == {
        str(code) for code in CLOSE_CODES
    }


def test_one_projects_socket_carries_every_message_of_a_subscription_but_the_replies() -> None:
    document = websocket_asyncapi_document()
    names = {
        document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
        for ref in document["channels"]["project"]["messages"].values()
    }

    assert names == {_literal(model) for model in wire.SERVER_MESSAGES} - {"error", "unsubscribed"}


def test_the_websocket_event_messages_are_the_events() -> None:
    assert _literal(wire.ClipUpdatedMessage) == ClipUpdated.message_type
    assert _literal(wire.ProjectFinishedMessage) == ProjectFinished.message_type
    assert _literal(wire.ClipStoredMessage) == ClipStored.message_type
    assert _literal(wire.AttemptSucceededMessage) == AttemptSucceeded.message_type
    assert _literal(wire.AttemptStoredMessage) == AttemptStored.message_type


# --- docs/API.md ---------------------------------------------------------------------------


def _http_paths() -> set[str]:
    app = create_app(ApiSettings.model_construct())
    # The dashboard's page and files, and the document API.md points to, are not API routes.
    not_api = {"/", "/static", "/openapi.json"}
    return {
        re.sub(r":\w+}", "}", route.path)  # {key:path} is written {key}
        for route in app.routes
        if isinstance(route, APIRoute | Route | Mount) and route.path not in not_api
    }


def test_api_md_names_every_http_route() -> None:
    missing = [
        path for path in sorted(_http_paths()) if f"`{path}" not in API_MD and path not in API_MD
    ]
    assert missing == []


def test_api_mds_example_of_unknown_fields_is_one_the_api_can_answer() -> None:
    # The body that example describes must get past the value count, which refuses a body
    # with more values than a valid one before it is parsed (110,000 fields never can).
    found = re.search(r"`body\.scenes\.0: (\d+) unknown fields \('(\w+)', ", API_MD)
    assert found is not None, "API.md no longer shows a scene of unknown fields?"
    unknown, first = int(found[1]), found[2]
    names = [first] + [f"{first}-{i}" for i in range(1, unknown)]
    scene = {"prompt": "a cat"} | dict.fromkeys(names, 0)
    body = json.dumps({"scenes": [scene]}).encode()

    assert not more_separators_than(body, most_separators(CreateProjectIn))


def test_api_md_names_every_websocket_route() -> None:
    for route in routes.routes():
        assert route.path in API_MD


def test_api_md_describes_every_websocket_message_type() -> None:
    missing = [
        name for name in sorted(_websocket_message_types()) if f'"type": "{name}"' not in API_MD
    ]
    assert missing == []


def test_api_md_describes_every_websocket_close_code() -> None:
    codes = {
        routes.CLOSE_BAD_REQUEST,
        keywatch.CLOSE_UNAUTHORIZED,
        session.CLOSE_NOT_FOUND,
        session.CLOSE_SERVER_ERROR,
        routes.CLOSE_TRY_AGAIN_LATER,
    }
    assert codes <= set(CLOSE_CODES)
    table_rows = set(re.findall(r"^\| `?(\d{4})`? \|", API_MD, flags=re.M))
    assert {str(code) for code in CLOSE_CODES} <= table_rows


def test_api_md_shows_ids_and_video_links_as_a_default_deployment_answers() -> None:
    """Project ids are UUIDs (written whole, or cut short with "…"); a stored_url is
    relative to the api (absolute only with REELFLOW_VIDEO_PUBLIC_URL)."""
    ids = re.findall(r"""(?:project_id|projectId)["']?:\s*["']([^"']+)["']""", API_MD)
    assert ids
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    odd = [value for value in ids if not (uuid.fullmatch(value) or value.endswith("…"))]
    assert odd == []
    short = [value for value in ids if value.endswith("…")]
    assert all(re.fullmatch(r"([0-9a-f]{8}-)?…", value) for value in short), short
    links = re.findall(r'"stored_url": "([^"]+)"', API_MD)
    assert links
    assert all(link.startswith("/v1/videos/videos/") for link in links), links


def test_api_md_describes_every_error_status() -> None:
    documented = {
        int(status)
        for operations in openapi_document()["paths"].values()
        for operation in operations.values()
        for status in operation["responses"]
        if int(status) >= 400
    }
    # Answers no single route declares: the slow-client deadline, a wrong method, a bug.
    statuses = documented | {408, 405, 500}
    table_rows = set(re.findall(r"^\| `?(\d{3})`? \|", API_MD, flags=re.M))
    assert {str(status) for status in statuses} <= table_rows


@pytest.mark.parametrize(
    "problem",
    [
        pytest.param(
            limit_exceeded(
                LimitExceeded(
                    Limit.DAILY_BUDGET_USD,
                    "spent",
                    value=1.0,
                    resets_at=datetime(2026, 12, 6, tzinfo=UTC),
                ),
                now=datetime(2026, 12, 5, tzinfo=UTC),
            ),
            id="budget",
        ),
        pytest.param(
            limit_exceeded(
                LimitExceeded(Limit.ALLOWED_MODELS, "not this one", value=["acme:video@2"]),
                now=datetime(2026, 12, 5, tzinfo=UTC),
            ),
            id="allowed-models",
        ),
        pytest.param(
            Problem(
                422,
                "Invalid Request",
                "body.scenes.0.duration: not a duration this model makes",
                errors=[{"loc": ["body", "scenes", 0, "duration"], "msg": "…", "allowed": [4, 6]}],
            ),
            id="allowed",
        ),
    ],
)
def test_an_error_answer_is_what_the_openapi_problem_schema_says(problem: Problem) -> None:
    answer = problem_response(problem)
    body = json.loads(bytes(answer.body))
    schema = create_app(ApiSettings()).openapi()["components"]["schemas"]["Problem"]

    jsonschema.validate(body, schema)
    # Every member is one the schema names, so generated clients read it.
    assert set(body) <= set(schema["properties"])
    for error in body.get("errors", []):
        assert set(error) <= set(schema["properties"]["errors"]["items"]["properties"])
    if "Retry-After" in answer.headers:
        assert problem.status in (402, 429, 503)


def test_the_websocket_schemas_say_what_the_notifier_writes() -> None:
    document = websocket_asyncapi_document()
    schemas = document["components"]["schemas"]
    example = ProjectStatusView.model_json_schema()["examples"][0]
    written = ProjectStatusView.model_validate(example).wire()

    def check(value: Any, name: str) -> None:
        jsonschema.validate(value, {"$ref": f"#/components/schemas/{name}", **document})

    check(written, "ProjectStatusView")
    # A member unset is left out, never null; one with a value by default is always there.
    with pytest.raises(jsonschema.ValidationError):
        check(
            written | {"results": [written["results"][0] | {"video_url": None}]},
            "ProjectStatusView",
        )
    for name in ("SnapshotMessage", "ClipUpdatedMessage", "ProjectFinishedMessage"):
        assert "type" in schemas[name]["required"]


def test_a_clip_updated_message_carries_the_clip_as_results_show_it_and_every_event_the_cost() -> (
    None
):
    # An event's clip is a results entry (attempts too, when they changed); every event says
    # the project's cost, as the status's.
    schemas = websocket_asyncapi_document()["components"]["schemas"]
    clip_ref = schemas["ClipUpdatedMessage"]["properties"]["clip"]["$ref"]
    status_ref = schemas["ProjectStatusView"]["properties"]["results"]

    assert clip_ref == status_ref["items"]["$ref"] == "#/components/schemas/ClipView"
    assert "attempts" in schemas["ClipView"]["properties"]
    cost_ref = schemas["ProjectStatusView"]["properties"]["cost"]["$ref"]
    for name in (
        "ClipUpdatedMessage",
        "ProjectFinishedMessage",
        "ClipStoredMessage",
        "AttemptStoredMessage",
        "AttemptSucceededMessage",
    ):
        assert schemas[name]["properties"]["cost"]["$ref"] == cost_ref


@pytest.mark.parametrize("name", ["ProjectStatusView", "ProjectChanged", "ProjectCancelled"])
def test_the_openapi_project_answers_say_what_the_api_writes(name: str) -> None:
    # ProjectChanged typed results as array | null and did not require success.
    document = create_app(ApiSettings.model_construct()).openapi()
    schema = document["components"]["schemas"][name]
    example = ProjectStatusView.model_json_schema()["examples"][0]
    extra = {
        "ProjectStatusView": {},
        "ProjectChanged": {"clips_changed": 1},
        "ProjectCancelled": {"clips_changed": 1, "clips_may_be_billed": 0},
    }[name]
    written = ProjectStatusView.model_validate(example).wire() | extra

    def check(value: Any) -> None:
        jsonschema.validate(value, {"$ref": f"#/components/schemas/{name}", **document})

    assert "success" in schema["required"]
    assert schema["properties"]["results"]["type"] == "array"
    check(written)
    check({k: v for k, v in written.items() if k != "results"})  # a list item's shape
    for nulled in ("results", "success"):
        with pytest.raises(jsonschema.ValidationError):
            check(written | {nulled: None})
    with pytest.raises(jsonschema.ValidationError):
        check({k: v for k, v in written.items() if k != "success"})
    with pytest.raises(jsonschema.ValidationError):
        check(written | {"results": [written["results"][0] | {"cost": None}]})
