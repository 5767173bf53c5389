"""Web basics: security headers, CORS, the local docs page, typed answers, slow clients cut off."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from reelflow_api.main import server_config
from reelflow_api.schemas import ProjectList
from reelflow_api.settings import Settings
from reelflow_common.ops import OPS_PATHS
from reelflow_common.store import ApiKeyStore, ProjectStatusView
from tests.integration.api_helpers import Api, assert_problem, finish, running_api
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration


# --- headers -------------------------------------------------------------------------


async def test_api_answers_are_nosniff_and_never_cached(api: Api) -> None:
    auth = await api.tenant()
    answers = [
        await api.client.get("/v1/projects", headers=auth),
        await api.client.get("/v1/projects"),  # a 401 problem
        await api.client.get("/v1/config"),
        await api.client.get("/healthz"),
        await api.create(auth, body={"scenes": []}),  # a 422 problem
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["cache-control"] == "no-store", response.url


async def test_the_dashboard_keeps_its_own_caching_and_gets_nosniff_too(api: Api) -> None:
    page = await api.client.get("/")

    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_the_docs_page_loads_swagger_ui_from_this_server_under_a_csp(api: Api) -> None:
    page = await api.client.get("/docs")

    assert page.status_code == 200
    html = page.text
    assert "cdn" not in html.lower()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    assert all(src.startswith("/docs-assets/") for src in sources)
    for src in sources:
        asset = await api.client.get(src)
        assert asset.status_code == 200, src
        assert asset.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    # The one inline script runs because the policy names its hash, and only it does.
    (inline,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert (await api.client.get("/redoc")).status_code == 404


# --- CORS ----------------------------------------------------------------------------

_PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_cors_is_off_by_default(api: Api) -> None:
    preflight = await api.client.options("/v1/projects", headers=_PREFLIGHT)
    plain = await api.client.get("/v1/config", headers={"Origin": "https://app.example.com"})

    assert not [name for name in preflight.headers if name.startswith("access-control-")]
    assert not [name for name in plain.headers if name.startswith("access-control-")]
    assert plain.status_code == 200


async def test_with_cors_off_a_preflight_is_refused_as_the_contract_says_not_a_405(
    api: Api,
) -> None:
    # It was 405 "Method Not Allowed", Allow: GET, POST: about the route, not CORS.
    evil = _PREFLIGHT | {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "DELETE",
    }
    refused = await api.client.options(
        "/v1/projects", headers=evil | {"X-Correlation-ID": "preflight-1"}
    )
    post = await api.client.options("/v1/projects", headers=_PREFLIGHT)
    not_a_preflight = await api.client.options("/v1/projects")

    assert assert_problem(refused, 400)["detail"] == (
        "CORS preflight refused: origin https://evil.example is not allowed; method DELETE is"
        " not allowed (allowed: GET, POST) (CORS is off on this API: no origin is allowed)."
    )
    assert assert_problem(post, 400)["detail"] == (
        "CORS preflight refused: origin https://app.example.com is not allowed"
        " (CORS is off on this API: no origin is allowed)."
    )
    assert not [name for name in refused.headers if name.startswith("access-control-")]
    assert refused.headers["x-content-type-options"] == "nosniff"
    # Every answer carries its correlation id, this one too (given, or made).
    assert refused.headers["x-correlation-id"] == "preflight-1"
    assert post.headers["x-correlation-id"]
    assert not_a_preflight.status_code == 405  # a plain OPTIONS is the route's, as before


async def test_cors_answers_the_configured_origins_only(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, cors_allow_origins=["https://app.example.com"])
    async with running_api(settings, mongo_db, amqp_connection) as api:
        allowed = await api.client.options("/v1/projects", headers=_PREFLIGHT)
        other = await api.client.options(
            "/v1/projects", headers=_PREFLIGHT | {"Origin": "https://evil.example"}
        )
        created = await api.create(
            await api.tenant(), headers={"Origin": "https://app.example.com"}
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert allowed.headers["x-correlation-id"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert created.headers["access-control-allow-origin"] == "https://app.example.com"
    exposed = created.headers["access-control-expose-headers"].lower()
    assert "location" in exposed
    assert "etag" in exposed  # a page reads it, to send it back as If-None-Match
    assert "idempotency-replayed" in exposed


async def test_a_refused_preflight_is_a_problem_saying_what_was_not_allowed(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, cors_allow_origins=["https://app.example.com"])
    async with running_api(settings, mongo_db, amqp_connection) as api:
        allowed = await api.client.options("/v1/projects", headers=_PREFLIGHT)
        origin = await api.client.options(
            "/v1/projects", headers=_PREFLIGHT | {"Origin": "https://evil.example"}
        )
        method = await api.client.options(
            "/v1/projects", headers=_PREFLIGHT | {"Access-Control-Request-Method": "DELETE"}
        )
        header = await api.client.options(
            "/v1/projects",
            headers=_PREFLIGHT | {"Access-Control-Request-Headers": "authorization,x-debug"},
        )

    assert allowed.status_code == 200
    assert allowed.text == "OK"
    assert assert_problem(origin, 400)["detail"] == (
        "CORS preflight refused: origin https://evil.example is not allowed."
    )
    assert "access-control-allow-origin" not in origin.headers
    assert assert_problem(method, 400)["detail"] == (
        "CORS preflight refused: method DELETE is not allowed (allowed: GET, POST)."
    )
    assert method.headers["access-control-allow-origin"] == "https://app.example.com"
    assert assert_problem(header, 400)["detail"] == (
        "CORS preflight refused: header x-debug is not allowed."
    )
    assert header.headers["x-content-type-options"] == "nosniff"


#: what browser tracing and monitoring add to every request, and a conditional GET's header
_TRACING = "traceparent,tracestate,baggage"


async def test_a_preflight_for_tracing_and_conditional_headers_is_allowed_and_more_by_setting(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    asks = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": f"authorization,if-none-match,{_TRACING}",
    }
    sentry = {"Access-Control-Request-Headers": f"authorization,{_TRACING},sentry-trace"}
    settings = settings_for(Settings, cors_allow_origins=["https://app.example.com"])
    async with running_api(settings, mongo_db, amqp_connection) as api:
        tracing = await api.client.options("/v1/projects/p1", headers=_PREFLIGHT | asks)
        sentry_refused = await api.client.options("/v1/projects", headers=_PREFLIGHT | sentry)
    extra = settings_for(
        Settings,
        cors_allow_origins=["https://app.example.com"],
        cors_allow_headers=["Sentry-Trace"],
    )
    async with running_api(extra, mongo_db, amqp_connection) as api:
        sentry_allowed = await api.client.options("/v1/projects", headers=_PREFLIGHT | sentry)
        still = await api.client.options("/v1/projects/p1", headers=_PREFLIGHT | asks)

    for allowed in (tracing, sentry_allowed, still):
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert assert_problem(sentry_refused, 400)["detail"] == (
        "CORS preflight refused: header sentry-trace is not allowed."
    )
    assert "sentry-trace" in sentry_allowed.headers["access-control-allow-headers"].lower()


# --- typed answers and the OpenAPI document -------------------------------------------


async def test_every_answer_is_what_its_response_model_describes(api: Api) -> None:
    auth = await api.tenant()
    created = await api.create(auth)
    project_id = created.json()["project_id"]
    await finish(api, project_id, next(iter(created.json()["clips"])))

    got = await api.client.get(f"/v1/projects/{project_id}", headers=auth)
    listed = await api.client.get("/v1/projects", headers=auth)

    for body in (created.json(), got.json()):
        assert ProjectStatusView.model_validate(body).wire() == body
    assert ProjectList.model_validate(listed.json()).wire() == listed.json()
    assert listed.json()["next_cursor"] is None
    assert "results" not in listed.json()["items"][0]


async def test_the_openapi_document_types_every_success_answer_and_has_bearer_auth(
    api: Api,
) -> None:
    document = (await api.client.get("/openapi.json")).json()

    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "rf_…",
        "description": document["components"]["securitySchemes"]["apiKey"]["description"],
    }
    untyped = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                contents: list[dict[str, Any]] = list(answer.get("content", {}).values())
                schema = contents[0].get("schema", {}) if contents else {}
                if not schema or schema == {}:
                    untyped.append(f"{method.upper()} {path} {status}")
    assert untyped == []
    create = document["paths"]["/v1/projects"]["post"]
    assert create["security"] == [{"apiKey": []}]
    assert "security" not in document["paths"]["/v1/config"]["get"]
    status_schema = document["components"]["schemas"]["ProjectStatusView"]
    assert status_schema["examples"][0]["success"] is True


class _SlowBody:
    """A request body whose first byte comes at once and the rest once ``release`` is set."""

    def __init__(self, release: asyncio.Event) -> None:
        self._release = release
        self.reading = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        self.reading = True
        await self._release.wait()
        yield b"}"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, a URL of it, the operation) of every operation but the probes'."""
    found = []
    for path, operations in document["paths"].items():
        if path in OPS_PATHS:
            continue
        url = re.sub(r"\{key\}", "videos/p/0/t.mp4", path)
        url = re.sub(r"\{[^}]+\}", "x", url)
        found += [(method.upper(), url, operation) for method, operation in operations.items()]
    return found


async def test_every_operation_documents_the_in_flight_and_body_refusals_it_may_get(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    """The middleware answers before any route: a request with a key at its cap is 429, a full
    API 503, wherever it goes (but to the probes); a body too large 413 wherever there is one.
    The document says so on each operation (it said 429 on three, 408 and 413 on one)."""
    settings = settings_for(
        Settings,
        max_in_flight=2,
        max_in_flight_per_key=1,
        max_in_flight_per_tenant=1,
        max_body_bytes=1024,
    )
    async with running_api(settings, mongo_db, amqp_connection) as api:
        document = (await api.client.get("/openapi.json")).json()
        operations = _operations(document)
        busy, other = await api.tenant("busy"), await api.tenant("other")
        release = asyncio.Event()
        slow: list[asyncio.Task[httpx.Response]] = []

        async def hold_a_slot(auth: dict[str, str]) -> None:
            body = _SlowBody(release)
            post = api.client.post("/v1/projects", content=body, headers=auth)
            slow.append(asyncio.create_task(post))
            await eventually(lambda: body.reading, "a slow body holding its slot")

        try:
            await hold_a_slot(busy)  # the key's one slot of two
            too_many = {
                (method, url): (await api.client.request(method, url, headers=busy)).status_code
                for method, url, _ in operations
            }
            await hold_a_slot(other)  # both slots
            full = {
                (method, url): (await api.client.request(method, url)).status_code
                for method, url, _ in operations
            }
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), DEADLINE_S)
        large = {
            (method, url): (
                await api.client.request(method, url, headers=other, content=b" " * 1025)
            ).status_code
            for method, url, operation in operations
            if "requestBody" in operation
        }

    assert set(too_many.values()) == {429}, too_many
    assert set(full.values()) == {503}, full
    assert len(large) == 2  # POST /v1/projects and the webhook
    assert set(large.values()) == {413}, large
    for method, url, operation in operations:
        answers = set(operation["responses"])
        assert {"429", "503"} <= answers, (method, url)
        if "requestBody" in operation:
            assert {"408", "413"} <= answers, (method, url)
    assert document["paths"]["/healthz"]["get"]["responses"].keys() == {"200"}


async def test_the_wait_bound_is_the_max_wait_s_setting(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, max_wait_s=5)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        auth = await api.tenant()
        too_long = await api.create(auth, wait=5.5)
        document = (await api.client.get("/openapi.json")).json()

    problem = assert_problem(too_long, 422)
    assert problem["errors"] == [
        {"loc": ["query", "wait"], "msg": "Input should be less than or equal to 5"}
    ]
    (wait,) = [
        p for p in document["paths"]["/v1/projects"]["post"]["parameters"] if p["name"] == "wait"
    ]
    assert wait["schema"]["maximum"] == 5


# --- slow clients -------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the process's signal handlers


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[int]:
    """The API behind real uvicorn (its protocol class is what cuts slow headers off)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(server_config(settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, "the api serving")
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        sock.close()


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), DEADLINE_S)


async def test_a_client_whose_headers_trickle_in_is_disconnected(
    settings_for: Callable[..., Any],
) -> None:
    settings = settings_for(Settings, http_host="127.0.0.1", http_header_timeout_s=0.5)
    async with serving(settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        await writer.drain()
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _read_all(reader)
        waited = loop.time() - started
        writer.close()
        # A prompt client on a fresh connection is served as usual.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            healthy = await http.get("/healthz")

    assert answer == b""  # closed without an answer
    assert 0.3 < waited < DEADLINE_S
    assert healthy.status_code == 200


async def test_a_body_that_does_not_arrive_in_time_is_a_408(
    settings_for: Callable[..., Any], mongo_db: Any
) -> None:
    settings = settings_for(Settings, http_host="127.0.0.1", http_body_timeout_s=0.5)
    # A valid key (without one the body is never read: 401); issued before the app starts,
    # whose index builds must not meet this first insert (see running_api).
    keys = ApiKeyStore(mongo_db)
    key = await keys.issue_key(await keys.create_tenant("acme"))
    async with serving(settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"title"'
        )
        await writer.drain()
        answer = await _read_all(reader)
        writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"application/problem+json" in head
    assert b"Request Timeout" in body


# --- WebSockets ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/ws", "/static/js/live.js"])
async def test_a_websocket_handshake_is_a_404_problem_saying_where_websockets_are(
    settings_for: Callable[..., Any], path: str
) -> None:
    # Through real uvicorn: it sends the app's answer to a handshake (its denial extension).
    async with serving(settings_for(Settings, http_host="127.0.0.1")) as port:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://127.0.0.1:{port}{path}",
                open_timeout=DEADLINE_S,
                proxy=None,
                additional_headers={"X-Correlation-ID": "req-ws-1"},
            ):
                pass

    answer = refused.value.response
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/problem+json"
    # The headers of every answer (API.md): they were missing from this one.
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Correlation-ID"] == "req-ws-1"
    assert json.loads(answer.body)["detail"] == (
        "No WebSocket on the API: the notifier serves them, at ws_url of GET /v1/config."
    )
