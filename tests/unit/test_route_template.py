"""Metric labels and span names use the route's template, known before the route runs; the routes
are matched once per request for every middleware that needs the route."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

import reelflow_api.auth
from reelflow_api.app import create_app
from reelflow_api.auth import Authentication, needs_api_key
from reelflow_api.matching import UNMATCHED, matched
from reelflow_api.middleware import BodyLimit
from reelflow_api.settings import Settings
from reelflow_api.telemetry import HttpTelemetry
from reelflow_common.client_json import ClientJson
from reelflow_common.store import ApiKeyStore


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/v1/projects/3f9c2a7d", "/v1/projects/{project_id}"),
        ("POST", "/v1/projects", "/v1/projects"),
        ("POST", "/v1/projects/3f9c2a7d/retry", "/v1/projects/{project_id}/retry"),
        ("POST", "/v1/webhooks/runware/the-secret", "/v1/webhooks/runware/{secret}"),
        ("DELETE", "/v1/projects/3f9c2a7d", "/v1/projects/{project_id}"),  # a 405 names it
        ("GET", "/v1/videos/p1/0/t1.mp4", "/v1/videos/{key:path}"),
        ("GET", "/static/js/main.js", "/static"),
        ("GET", "/metrics", "/metrics"),
        ("GET", "/wp-admin/setup.php", UNMATCHED),
    ],
)
def test_a_request_is_labelled_by_the_template_of_its_route(
    method: str, path: str, template: str
) -> None:
    app = create_app(Settings())
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}

    assert matched(app.router.routes, scope).template == template


class Thing(ClientJson):
    name: str


async def test_a_request_is_matched_once_and_a_routes_dependencies_walked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Telemetry, authentication and the body limit each matched the routes (three matches
    # a request before FastAPI's own), and authentication walked the route's dependencies
    # on every request.
    router = APIRouter()

    @router.post("/things")
    async def create_thing(thing: Thing) -> None: ...

    route = router.routes[0]
    matches = route.matches
    calls = {"matches": 0, "needs_api_key": 0}

    def counted_matches(scope: Scope) -> tuple[Match, Scope]:
        calls["matches"] += 1
        return matches(scope)

    def counted_needs_api_key(route: BaseRoute | None) -> bool:
        calls["needs_api_key"] += 1
        return needs_api_key(route)

    monkeypatch.setattr(route, "matches", counted_matches)
    monkeypatch.setattr(reelflow_api.auth, "needs_api_key", counted_needs_api_key)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):  # the whole body, which BodyLimit checks
            pass
        await Response(status_code=204)(scope, receive, send)

    def no_keys() -> ApiKeyStore:
        raise AssertionError("this route needs no key")

    app = HttpTelemetry(
        Authentication(
            BodyLimit(endpoint, max_bytes=1024, routes=router.routes),
            routes=router.routes,
            key_store=no_keys,
        ),
        routes=router.routes,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        for _ in range(3):
            response = await client.post("/things", json={"name": "x"})
            assert response.status_code == 204

    assert calls == {"matches": 3, "needs_api_key": 1}
