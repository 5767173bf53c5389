"""The API in-process: bad input is a 4xx problem+json that names what is wrong, never a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from reelflow_api.routes.projects import _request_hash
from reelflow_api.schemas import CreateProjectIn
from reelflow_common.domain import ClipRequest
from reelflow_common.store import NewProject
from reelflow_devtools.contracts import openapi_document
from tests.integration.api_helpers import Api, assert_problem, error_locs, isolated_api

# Every case is one request that must change nothing: one app serves the module.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(amqp_url, mongo_url) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def auth(api: Api) -> dict[str, str]:
    return await api.tenant()


def scenes(count: int, **fields: Any) -> dict[str, Any]:
    return {"scenes": [{"prompt": f"scene {i}"} | fields for i in range(count)]}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"scenes": []}, ["body", "scenes"], id="no-scenes"),
        pytest.param(scenes(51), ["body", "scenes"], id="51-scenes"),
        pytest.param({"title": "x"}, ["body", "scenes"], id="scenes-missing"),
        pytest.param(scenes(1, prompt=""), ["body", "scenes", 0, "prompt"], id="empty-prompt"),
        pytest.param(scenes(1, prompt=" \n"), ["body", "scenes", 0, "prompt"], id="blank-prompt"),
        pytest.param(scenes(1, prompt="a"), ["body", "scenes", 0, "prompt"], id="1-char-prompt"),
        pytest.param(scenes(1, prompt=" a "), ["body", "scenes", 0, "prompt"], id="1-char-padded"),
        pytest.param(
            scenes(1, prompt="p" * 2001), ["body", "scenes", 0, "prompt"], id="long-prompt"
        ),
        pytest.param(
            scenes(1, prompt="ab\u0000"), ["body", "scenes", 0, "prompt"], id="nul-prompt"
        ),
        pytest.param(
            scenes(1, negative_prompt="blur\u001b[0m"),
            ["body", "scenes", 0, "negative_prompt"],
            id="escape-in-negative-prompt",
        ),
        pytest.param(scenes(1) | {"title": "a\u0007b"}, ["body", "title"], id="bell-in-title"),
        pytest.param(
            scenes(1, prompt="a\u0085b"), ["body", "scenes", 0, "prompt"], id="c1-next-line"
        ),
        pytest.param(scenes(1) | {"model": "not a model"}, ["body", "model"], id="bad-model"),
        pytest.param(scenes(1, width=1001), ["body", "scenes", 0, "width"], id="width-not-x8"),
        pytest.param(scenes(1, duration=0), ["body", "scenes", 0, "duration"], id="duration-0"),
        pytest.param(scenes(1) | {"colour": "red"}, ["body", "colour"], id="unknown-field"),
        pytest.param(
            scenes(1, camera="pan"), ["body", "scenes", 0, "camera"], id="unknown-scene-field"
        ),
        pytest.param(scenes(1, prompt=None), ["body", "scenes", 0, "prompt"], id="null-prompt"),
        pytest.param({"scenes": [None]}, ["body", "scenes", 0], id="null-scene"),
        pytest.param({"scenes": None}, ["body", "scenes"], id="null-scenes"),
        pytest.param(
            {"scenes": [{"prompt": {"a": None}}]},
            ["body", "scenes", 0, "prompt"],
            id="nested-object-prompt",
        ),
        pytest.param(scenes(1, seed=2**70), ["body", "scenes", 0, "seed"], id="huge-seed"),
        pytest.param([{"prompt": "x"}], ["body"], id="json-array"),
        pytest.param("a string", ["body"], id="json-string"),
        pytest.param(None, ["body"], id="json-null"),
    ],
)
async def test_an_invalid_create_body_is_a_422_naming_the_field(
    api: Api, auth: dict[str, str], body: Any, loc: list[Any]
) -> None:
    response = await api.client.post("/v1/projects", json=body, headers=auth)

    problem = assert_problem(response, 422)
    assert loc in error_locs(problem)
    assert await api.drain() == []


async def test_a_control_character_is_named_with_where_it_is(
    api: Api, auth: dict[str, str]
) -> None:
    response = await api.client.post(
        "/v1/projects", json=scenes(1, prompt="ab\u0000"), headers=auth
    )

    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {
            "loc": ["body", "scenes", 0, "prompt"],
            "msg": "must not contain control characters: U+0000 at character 2"
            " (tab, line feed and carriage return are fine)",
        }
    ]


async def test_a_validators_message_is_said_without_pydantics_value_error_prefix(
    api: Api, auth: dict[str, str]
) -> None:
    response = await api.client.post("/v1/projects", json=scenes(1, prompt=" x "), headers=auth)

    problem = assert_problem(response, 422)
    said = "must have at least 2 characters besides whitespace"
    assert problem["detail"] == f"body.scenes.0.prompt: {said}"
    assert problem["errors"] == [{"loc": ["body", "scenes", 0, "prompt"], "msg": said}]


async def test_a_prompt_of_lines_and_tabs_is_taken(api: Api, auth: dict[str, str]) -> None:
    prompt = "a fox in the snow\n\tslow pan left\r\nthen a close-up"
    response = await api.client.post(
        "/v1/projects", json=scenes(1, prompt=prompt) | {"title": "Line\tby line"}, headers=auth
    )

    assert response.status_code == 202, response.text
    [submitted] = await api.drain()
    assert submitted.body["request"]["prompt"] == prompt


async def test_a_body_of_more_values_than_a_valid_one_holds_is_refused_unparsed(
    api: Api, auth: dict[str, str]
) -> None:
    # The reviewer's body: 1 MiB, 110,000 unknown members in one scene. Each was an error
    # of its own (an 8 MB answer, a second of the event loop's CPU to build), and parsing
    # it alone costs about as much as a valid create's whole work.
    scene = {"prompt": "hi"} | {format(i, "x"): 0 for i in range(110_000)}

    response = await api.client.post("/v1/projects", json={"scenes": [scene]}, headers=auth)

    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {
            "loc": ["body"],
            "msg": "more fields and array items than a valid body has (at most 704 ',' and ':')",
        }
    ]
    assert len(response.content) < 1024
    assert await api.drain() == []


async def test_an_object_of_many_unknown_fields_is_one_error(
    api: Api, auth: dict[str, str]
) -> None:
    scene = {"prompt": "hi"} | {f"x{i}": 0 for i in range(60)}

    response = await api.client.post("/v1/projects", json={"scenes": [scene]}, headers=auth)

    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {
            "loc": ["body", "scenes", 0],
            "msg": "60 unknown fields ('x0', 'x1', 'x2', …); the fields are prompt,"
            " negative_prompt, duration, width, height, seed, fps",
        }
    ]
    assert "errors_omitted" not in problem


async def test_a_422_lists_the_first_20_errors_and_counts_the_rest(
    api: Api, auth: dict[str, str]
) -> None:
    body = scenes(50, camera="pan", lens="wide")

    response = await api.client.post("/v1/projects", json=body, headers=auth)

    problem = assert_problem(response, 422)
    assert error_locs(problem) == [
        ["body", "scenes", i, field] for i in range(10) for field in ("camera", "lens")
    ]
    assert problem["errors_omitted"] == 80
    assert problem["detail"] == "body.scenes.0.camera: Extra inputs are not permitted"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
async def test_a_duration_that_is_not_a_finite_number_says_so(
    api: Api, auth: dict[str, str], number: str
) -> None:
    body = '{"scenes": [{"prompt": "a fox", "duration": NUMBER}]}'.replace("NUMBER", number)
    headers = auth | {"Content-Type": "application/json"}

    response = await api.client.post("/v1/projects", content=body, headers=headers)

    problem = assert_problem(response, 422)
    [error] = problem["errors"]
    assert error["loc"] == ["body", "scenes", 0, "duration"]
    assert "finite number" in error["msg"]
    assert await api.drain() == []


@pytest.mark.parametrize(
    ("scene", "field", "msg"),
    [
        pytest.param({"duration": "6"}, "duration", "must be a number, not a string", id="str"),
        pytest.param(
            {"duration": True}, "duration", "must be a number, not true or false", id="bool"
        ),
        pytest.param({"width": "1280"}, "width", "must be an integer, not a string", id="str-int"),
        pytest.param(
            {"width": 1280.5},
            "width",
            "must be an integer, not a number with a fraction",
            id="fraction",
        ),
        pytest.param(
            {"seed": False}, "seed", "must be an integer, not true or false", id="bool-int"
        ),
        pytest.param({"prompt": 42}, "prompt", "must be a string, not a number", id="number-str"),
    ],
)
async def test_a_body_value_of_another_json_type_is_a_422_saying_which_it_must_be(
    api: Api, auth: dict[str, str], scene: dict[str, Any], field: str, msg: str
) -> None:
    body = {"scenes": [{"prompt": "a fox"} | scene]}

    response = await api.client.post("/v1/projects", json=body, headers=auth)

    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"loc": ["body", "scenes", 0, field], "msg": msg}]
    assert problem["detail"] == f"body.scenes.0.{field}: {msg}"
    assert await api.drain() == []


async def test_numbers_are_json_numbers_and_a_whole_one_is_an_integer(
    api: Api, auth: dict[str, str]
) -> None:
    # Strict, as JSON Schema reads the contract: "6" is no number, and 1280.0 is an integer
    # (Python's json.dumps writes a float so).
    as_text = {"scenes": [{"prompt": "a fox", "duration": "6"}]}
    whole = {"scenes": [{"prompt": "a fox", "duration": 6, "width": 1280.0, "height": 720}]}

    refused = await api.client.post("/v1/projects", json=as_text, headers=auth)
    accepted = await api.client.post("/v1/projects", json=whole, headers=auth)

    assert_problem(refused, 422)
    assert accepted.status_code == 202, accepted.text
    [submit] = await api.drain()
    assert (submit.body["request"]["duration"], submit.body["request"]["width"]) == (6, 1280)


@pytest.mark.parametrize(
    ("model", "scene", "field", "allowed"),
    [
        pytest.param("google:3@3", {"duration": 5}, "duration", [4, 6, 7, 8], id="veo-5s"),
        pytest.param("google:veo@3.1-lite", {"duration": 7}, "duration", [4, 6, 8], id="lite-7s"),
        pytest.param(
            "google:3@3",
            {"width": 640, "height": 480},
            "width",
            ["1280x720", "720x1280", "1920x1080", "1080x1920"],
            id="veo-640x480",
        ),
        pytest.param("klingai:5@3", {"duration": 5, "seed": 3}, "seed", None, id="kling-seed"),
        pytest.param("minimax:3@1", {"fps": 24}, "fps", [25], id="minimax-24fps"),
        pytest.param(
            "google:3@3", {"negative_prompt": "blur"}, "negative_prompt", None, id="veo-negative"
        ),
    ],
)
async def test_a_scene_its_model_would_refuse_is_a_422_naming_what_the_model_allows(
    api: Api,
    auth: dict[str, str],
    model: str,
    scene: dict[str, Any],
    field: str,
    allowed: list[Any] | None,
) -> None:
    # Kling makes no clip of the default duration (4 s).
    valid: dict[str, Any] = {"duration": 5} if model == "klingai:5@3" else {}
    body = {
        "model": model,
        "scenes": [{"prompt": "fine"} | valid, {"prompt": "no"} | valid | scene],
    }

    response = await api.client.post("/v1/projects", json=body, headers=auth)

    problem = assert_problem(response, 422)
    [error] = problem["errors"]
    assert error["loc"] == ["body", "scenes", 1, field]
    assert model in error["msg"]
    assert error.get("allowed") == allowed
    # A person reads what the model allows in the message, as a program reads the list.
    shown = f"(allowed: {', '.join(str(value) for value in allowed)})" if allowed else "allowed"
    assert (shown in error["msg"]) == bool(allowed)
    assert problem["detail"] == f"body.scenes.1.{field}: {error['msg']}"
    assert await api.drain() == []


async def test_a_scene_without_duration_gets_the_models_shortest_when_it_has_no_default_one(
    api: Api, auth: dict[str, str]
) -> None:
    # The configured default (4 s) is not a duration Kling makes: its shortest (5 s) is used.
    body = {"model": "klingai:5@3", "scenes": [{"prompt": "a fox"}]}

    response = await api.client.post("/v1/projects", json=body, headers=auth)

    assert response.status_code == 202, response.text
    [submit] = await api.drain()
    assert submit.body["request"]["duration"] == 5


async def test_a_replay_of_a_project_accepted_before_the_rules_answers_with_that_project(
    api: Api,
) -> None:
    # Accepted earlier (another release, other defaults), now outside the rules: a 422
    # would tell the client nothing was made while the project runs and is billed.
    tenant_id = await api.keys.create_tenant("earlier")
    auth = {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"}
    body = {"model": "google:3@3", "scenes": [{"prompt": "a tram at dawn", "duration": 5}]}
    earlier = await api.projects.create(
        NewProject(
            tenant_id=tenant_id,
            title="",
            model="google:3@3",
            scenes=[ClipRequest(prompt="a tram at dawn", duration=5, width=1280, height=720)],
            idempotency_key="k-earlier",
            request_hash=_request_hash(CreateProjectIn.model_validate(body)),
        )
    )

    replay = await api.client.post(
        "/v1/projects", json=body, headers=auth | {"Idempotency-Key": "k-earlier"}
    )
    fresh = await api.client.post(
        "/v1/projects", json=body, headers=auth | {"Idempotency-Key": "k-new"}
    )

    assert replay.status_code == 202, replay.text
    assert replay.json()["project_id"] == earlier.project.id
    assert_problem(fresh, 422)
    assert await api.drain() == []


async def test_a_model_reelflow_has_no_rules_for_is_sent_as_is(
    api: Api, auth: dict[str, str]
) -> None:
    body = {"model": "acme:video@9", "scenes": [{"prompt": "a fox", "duration": 5, "fps": 24}]}

    response = await api.client.post("/v1/projects", json=body, headers=auth)

    assert response.status_code == 202, response.text
    [submit] = await api.drain()
    assert submit.body["request"]["duration"] == 5


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b'{"scenes": [{"prompt": "a"}]',
        b"[1, 2",
        b'{"scenes": [{"prompt": "\xff"}]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"scenes": ' + b"9" * 5_000 + b"}",
    ],
    ids=[
        "broken",
        "empty",
        "not-utf8",
        "unclosed",
        "unclosed-array",
        "invalid-utf8",
        "too-deep",
        "integer-too-long",
    ],
)
async def test_a_body_that_is_not_json_is_a_422(
    api: Api, auth: dict[str, str], content: bytes
) -> None:
    response = await api.client.post(
        "/v1/projects", content=content, headers=auth | {"Content-Type": "application/json"}
    )

    problem = assert_problem(response, 422)
    assert all(loc[0] == "body" for loc in error_locs(problem))


@pytest.mark.parametrize(
    ("content", "content_type", "detail"),
    [
        pytest.param(
            b"title=x&scenes=a+cat",
            "application/x-www-form-urlencoded",
            "body: not read as JSON (sent as application/x-www-form-urlencoded):"
            " send a JSON object with Content-Type: application/json",
            id="curl-d-without-content-type",
        ),
        pytest.param(
            b'{"scenes": [{"prompt": "a cat"}]}',
            None,
            "body: not read as JSON (sent without a Content-Type):"
            " send a JSON object with Content-Type: application/json",
            id="no-content-type",
        ),
        pytest.param(
            b'[{"prompt": "a cat"}]',
            "application/json",
            "body: must be a JSON object, not an array",
            id="top-level-array",
        ),
        pytest.param(
            b"null",
            "application/json",
            "body: must be a JSON object, not null",
            id="null",
        ),
        pytest.param(
            b"",
            "application/json",
            "body: missing: send a JSON object with Content-Type: application/json",
            id="empty",
        ),
        pytest.param(
            b'{"title": "x", "scenes": [}',
            "application/json",
            "body: not valid JSON: expecting value at line 1 column 27",
            id="bad-json",
        ),
        pytest.param(
            b'{"title": "x",\n "scenes": [{"prompt": "a cat"}]\n "model": "google:3@3"}',
            "application/json",
            "body: not valid JSON: expecting ',' delimiter at line 3 column 2",
            id="bad-json-line-3",
        ),
        pytest.param(
            b'{"title": "x", "scenes": [{"prompt": "a\tcat"}]}',
            "application/json",
            "body: not valid JSON: invalid control character at line 1 column 40",
            id="raw-control-character",
        ),
    ],
)
async def test_a_body_that_is_no_json_object_is_a_422_saying_what_to_send(
    api: Api, auth: dict[str, str], content: bytes, content_type: str | None, detail: str
) -> None:
    headers = auth | ({"Content-Type": content_type} if content_type else {})

    response = await api.client.post("/v1/projects", content=content, headers=headers)

    problem = assert_problem(response, 422)
    assert problem["detail"] == detail
    assert problem["errors"] == [{"loc": ["body"], "msg": detail.removeprefix("body: ")}]
    assert await api.drain() == []


@pytest.mark.parametrize(
    ("method", "path", "body", "detail"),
    [
        pytest.param(
            "GET",
            "/v1/usage?month=2026-13",
            None,
            "query.month: should be a UTC month as YYYY-MM (1970-01 to 2999-12), such as 2026-12",
            id="month",
        ),
        pytest.param(
            "POST",
            "/v1/projects",
            {"model": "veo3", "scenes": [{"prompt": "a cat"}]},
            "body.model: should be a Runware AIR id (provider:model@version), such as google:3@3",
            id="model",
        ),
    ],
)
async def test_a_value_of_the_wrong_format_is_a_422_naming_the_format_not_a_pattern(
    api: Api, auth: dict[str, str], method: str, path: str, body: Any, detail: str
) -> None:
    response = await api.client.request(method, path, json=body, headers=auth)

    problem = assert_problem(response, 422)
    assert problem["detail"] == detail
    assert "pattern" not in response.text


@pytest.mark.parametrize("wait", ["121", "-1", "soon", "nan", "inf"])
async def test_a_wait_outside_0_to_120_is_a_422(api: Api, auth: dict[str, str], wait: str) -> None:
    response = await api.create(auth, wait=wait)

    problem = assert_problem(response, 422)
    assert ["query", "wait"] in error_locs(problem)
    assert await api.drain() == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "101"}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"status": "done"}, ["query", "status"]),
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ({"cursor": "eyJ4IjogMX0"}, ["query", "cursor"]),  # base64 of a JSON without our fields
        ({"cursor": ""}, ["query", "cursor"]),
    ],
)
async def test_a_bad_list_query_is_a_422_naming_the_parameter(
    api: Api, auth: dict[str, str], params: dict[str, str], loc: list[str]
) -> None:
    response = await api.client.get("/v1/projects", params=params, headers=auth)

    problem = assert_problem(response, 422)
    assert loc in error_locs(problem)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": "Bearer rf_not-a-key-anyone-has"},
    ],
    ids=["missing", "no-key", "blank-key", "basic", "unknown"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/projects"),
        ("GET", "/v1/projects"),
        ("GET", "/v1/projects/{id}"),
        ("POST", "/v1/projects/{id}/retry"),
        ("POST", "/v1/projects/{id}/cancel"),
    ],
)
async def test_without_a_valid_key_every_project_route_is_a_401(
    api: Api, headers: dict[str, str], method: str, path: str
) -> None:
    url = path.format(id=uuid.uuid4())
    json = {"scenes": [{"prompt": "a cat"}]} if method == "POST" else None

    response = await api.client.request(method, url, json=json, headers=headers)

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_401_comes_before_a_422(api: Api) -> None:
    response = await api.client.post("/v1/projects", json={"scenes": []})

    assert_problem(response, 401)


#: every operation the contract says needs an API key, as (method, path)
KEYED_OPERATIONS = [
    (method.upper(), path)
    for path, operations in openapi_document()["paths"].items()
    for method, operation in operations.items()
    if operation.get("security")
]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer rf_not-a-key-anyone-has"}],
    ids=["no-key", "unknown-key"],
)
@pytest.mark.parametrize(("method", "path"), KEYED_OPERATIONS)
async def test_without_a_valid_key_the_body_is_not_read(
    api: Api, headers: dict[str, str], method: str, path: str
) -> None:
    # Not JSON: a route that read it first would answer 422.
    url = path.format(project_id=uuid.uuid4())
    content_type = {"Content-Type": "application/json"}

    response = await api.client.request(
        method, url, content=b'{"scenes": [', headers=headers | content_type
    )

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    "path", ["/v1/projects/{id}", "/v1/projects/{id}/retry", "/v1/projects/{id}/cancel"]
)
async def test_unknown_projects_are_a_404_on_every_route(
    api: Api, auth: dict[str, str], method: str, path: str
) -> None:
    url = path.format(id=uuid.uuid4())

    response = await api.client.request(method, url, headers=auth)

    expected = 404 if (method == "GET") == (path == "/v1/projects/{id}") else 405
    assert_problem(response, expected)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/projects", "GET, POST"),
        ("DELETE", "/v1/projects/{id}", "GET"),
        ("GET", "/v1/projects/{id}/cancel", "POST"),
    ],
)
async def test_a_405_names_every_method_the_path_takes(
    api: Api, auth: dict[str, str], method: str, path: str, allowed: str
) -> None:
    response = await api.client.request(method, path.format(id=uuid.uuid4()), headers=auth)

    assert_problem(response, 405)
    assert response.headers["allow"] == allowed


async def test_a_405_of_a_static_file_names_no_empty_allow(api: Api) -> None:
    response = await api.client.post("/static/favicon.svg")

    assert response.status_code == 405
    assert response.headers.get("allow", "GET, HEAD") != ""


async def test_an_unknown_path_is_a_problem_404(api: Api) -> None:
    assert_problem(await api.client.get("/v2/nothing"), 404)


async def test_a_body_nested_too_deep_is_a_4xx_problem(api: Api, auth: dict[str, str]) -> None:
    response = await api.client.post(
        "/v1/projects", content=b"[" * 100_000, headers=auth | {"Content-Type": "application/json"}
    )

    problem = assert_problem(response, response.status_code)
    assert 400 <= response.status_code < 500
    assert problem["title"] != "Error"


@pytest.mark.parametrize("key", ["k" * 256, ""], ids=["too-long", "empty"])
async def test_an_idempotency_key_outside_1_to_255_characters_is_a_422(
    api: Api, auth: dict[str, str], key: str
) -> None:
    response = await api.create(auth, headers={"Idempotency-Key": key})

    problem = assert_problem(response, 422)
    assert ["header", "idempotency-key"] in [
        [part.lower() if isinstance(part, str) else part for part in loc]
        for loc in error_locs(problem)
    ]
