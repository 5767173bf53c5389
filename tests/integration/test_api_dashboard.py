"""The dashboard's files and ``GET /v1/config``, served by the API with their security headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request

from reelflow_api.routes.dashboard import page_security_headers, ws_url
from reelflow_api.settings import Settings
from tests.integration.api_helpers import Api, assert_problem, running_api

pytestmark = pytest.mark.integration


async def test_config_says_where_the_notifier_is_and_what_a_project_may_hold(api: Api) -> None:
    answer = await api.client.get("/v1/config", headers={"Host": "127.0.0.1:8000"})

    assert answer.status_code == 200
    assert answer.json() == {
        "ws_url": "ws://127.0.0.1:8001",
        "defaults": {"model": "google:3@3", "duration": 4.0, "width": 1280, "height": 720},
        "limits": {
            "scenes": 50,
            "title_chars": 500,
            "prompt_chars": 2000,
            "prompt_min_chars": 2,
            "duration_min_exclusive": 0.0,
            "duration_max": 60.0,
            "size_min": 64,
            "size_max": 4096,
            "size_step": 8,
        },
        "models": answer.json()["models"],  # the next test holds them to the API's checks
    }
    assert answer.json()["models"]["google:3@3"] == {
        "durations": [4.0, 6.0, 7.0, 8.0],
        "default_duration": 4.0,
        "sizes": [
            {"width": 1280, "height": 720},
            {"width": 720, "height": 1280},
            {"width": 1920, "height": 1080},
            {"width": 1080, "height": 1920},
        ],
        "fps": [],
        "seed": True,
        "negative_prompt": False,
    }
    # Kling makes no 4 s clip: a scene naming no duration gets its shortest.
    assert answer.json()["models"]["klingai:5@3"]["default_duration"] == 5.0


async def test_what_config_says_of_each_model_is_what_a_project_is_held_to(api: Api) -> None:
    """A form built from ``models`` sends nothing the API refuses, and knows what it would."""
    auth = await api.tenant()
    models = (await api.client.get("/v1/config")).json()["models"]
    assert len(models) >= 5

    for model, rules in models.items():
        fits = {"prompt": "fits", "duration": rules["default_duration"]}
        accepted = [{"prompt": "no duration"}]
        accepted += [fits | {"duration": duration} for duration in rules["durations"] or []]
        accepted += [fits | size for size in rules["sizes"] or []]
        accepted += [fits | {"fps": fps} for fps in rules["fps"]]
        accepted += [fits | {"seed": 7}] if rules["seed"] else []
        accepted += [fits | {"negative_prompt": "blur"}] if rules["negative_prompt"] else []
        refused = {"fps": fits | {"fps": 24}}  # no model makes 24 fps
        if rules["durations"] is not None:
            refused["duration"] = fits | {"duration": 4.5}
        if rules["sizes"] is not None:
            refused["width"] = fits | {"width": 640, "height": 480}
        if not rules["seed"]:
            refused["seed"] = fits | {"seed": 7}
        if not rules["negative_prompt"]:
            refused["negative_prompt"] = fits | {"negative_prompt": "blur"}

        created = await api.create(auth, {"model": model, "scenes": accepted})
        refusal = await api.create(auth, {"model": model, "scenes": list(refused.values())})

        assert created.status_code == 202, (model, created.text)
        errors = assert_problem(refusal, 422)["errors"]
        allowed = {
            "duration": rules["durations"],
            "width": [f"{size['width']}x{size['height']}" for size in rules["sizes"] or []],
            "fps": rules["fps"] or None,
        }
        assert [(error["loc"][3], error.get("allowed")) for error in errors] == [
            (field, allowed.get(field)) for field in refused
        ], model
    await api.drain()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("evil.test; script-src *", "ws://127.0.0.1:8001"),
        ("evil.test'", "ws://127.0.0.1:8001"),
        ("a b.test:8000", "ws://127.0.0.1:8001"),
        ("reelflow.example.com:8000", "ws://reelflow.example.com:8001"),
        ("10.0.0.7", "ws://10.0.0.7:8001"),
        ("[::1]:8000", "ws://[::1]:8001"),
    ],
)
def test_only_a_host_name_or_an_address_from_the_host_header_reaches_the_page_policy(
    settings_for: Callable[..., Any], host: str, expected: str
) -> None:
    """Without ``public_ws_url`` the notifier's address comes from the Host header, and goes into
    ``/v1/config`` and the page's Content-Security-Policy: nothing else of the header may."""
    scope = {
        "type": "http",
        "scheme": "http",
        "path": "/",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", host.encode())],
    }

    derived = ws_url(Request(scope), settings_for(Settings))

    assert derived == expected
    assert "evil" not in page_security_headers(derived)["Content-Security-Policy"]


async def test_public_ws_url_overrides_the_derived_one(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, public_ws_url="wss://reelflow.example.com")
    async with running_api(settings, mongo_db, amqp_connection) as api:
        config = (await api.client.get("/v1/config")).json()
        page = await api.client.get("/")

    assert config["ws_url"] == "wss://reelflow.example.com"
    assert (
        "connect-src 'self' wss://reelflow.example.com;" in page.headers["content-security-policy"]
    )


async def test_the_page_allows_only_its_own_code_and_the_notifier(api: Api) -> None:
    page = await api.client.get("/", headers={"Host": "localhost:8000"})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/main.js">' in page.text
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self' ws://localhost:8001"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/main.js", "text/javascript"),
        ("/static/css/app.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files_are_served_with_their_type_and_nosniff(
    api: Api, path: str, content_type: str
) -> None:
    answer = await api.client.get(path)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(content_type)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-cache"


async def test_every_module_the_page_imports_is_served(api: Api) -> None:
    """A missing or misspelt module would break the page only in a browser; catch it here."""
    pending, seen = ["/static/js/main.js"], set()
    while pending:
        path = pending.pop()
        seen.add(path)
        answer = await api.client.get(path)
        assert answer.status_code == 200, path
        base = path.rsplit("/", 1)[0]
        for relative in re.findall(r"from '(\.{1,2}/[^']+)'", answer.text):
            resolved = _resolve(base, relative)
            if resolved not in seen:
                pending.append(resolved)
    assert "/static/js/views/project.js" in seen


def _resolve(base: str, relative: str) -> str:
    parts = base.split("/")
    for part in relative.split("/"):
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


async def test_a_path_outside_the_static_folder_is_not_served(api: Api) -> None:
    # Encoded, so the client sends the dots as they are: the package's code stays private.
    answer = await api.client.get("/static/%2E%2E/settings.py")

    assert answer.status_code == 404
