"""The API in-process: health, readiness through a MongoDB outage, metrics, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from reelflow_api.deps import AppState
from reelflow_api.settings import Settings
from tests.integration.api_helpers import (
    PROBLEM_JSON,
    Api,
    assert_problem,
    running_api,
)
from tests.relay import TcpProxy
from tests.waiting import eventually_matches

pytestmark = pytest.mark.integration


async def answer(call: Callable[[], Awaitable[httpx.Response]], status: int) -> httpx.Response:
    """Call until the answer has ``status``: a state the app reaches on its own."""
    return await eventually_matches(call, lambda r: r.status_code == status, f"an answer {status}")


async def test_healthz_answers_200(api: Api) -> None:
    response = await api.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_200_with_both_checks(api: Api) -> None:
    response = await answer(lambda: api.client.get("/readyz"), 200)

    assert response.json() == {"status": "ok", "checks": {"rabbitmq": True, "mongodb": True}}


async def test_metrics_are_prometheus_text_counting_confirmed_publishes(api: Api) -> None:
    await api.create(await api.tenant())

    response = await api.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE reelflow_published_total counter" in response.text
    assert 'reelflow_published_total{kind="command",result="confirmed"}' in response.text


async def test_an_api_without_mongodb_starts_is_unready_and_recovers(
    settings_for: Callable[..., Any], mongo_url: str, mongo_db: Any, amqp_connection: Any
) -> None:
    target = urlsplit(mongo_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 27017) as mongo:
        mongo.go_down()
        settings = settings_for(
            Settings,
            mongo_url=SecretStr(f"mongodb://127.0.0.1:{mongo.port}/?directConnection=true"),
            mongo_timeout_s=0.3,
        )
        async with running_api(settings, mongo_db, amqp_connection, wait_until_ready=False) as api:
            healthz = await api.client.get("/healthz")
            readyz = await eventually_matches(
                lambda: api.client.get("/readyz"),
                lambda r: r.json()["checks"]["rabbitmq"] is True,
                "the broker linked",
            )
            auth = await api.tenant()  # through the test's own client, not the switch
            refused = await api.create(auth)

            assert healthz.status_code == 200
            assert readyz.status_code == 503
            assert readyz.json()["checks"] == {"rabbitmq": True, "mongodb": False}
            assert_problem(refused, 503)
            assert refused.headers["retry-after"]

            mongo.come_back()
            await answer(lambda: api.client.get("/readyz"), 200)
            created = await api.create(auth)
            assert created.status_code == 202

            mongo.go_down()
            await answer(lambda: api.client.get("/readyz"), 503)
            project_id = created.json()["project_id"]
            assert_problem(await api.client.get(f"/v1/projects/{project_id}", headers=auth), 503)


async def test_a_create_while_indexes_are_missing_is_a_503_not_a_duplicate_risk(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, mongo_timeout_s=0.5)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        state: AppState = api.app.state.reelflow
        state.indexes.ensured.clear()  # as if MongoDB had not answered yet

        response = await api.create(await api.tenant())

        assert_problem(response, 503)
        assert await api.drain() == []


async def test_the_openapi_document_lists_the_routes_and_problem_answers(api: Api) -> None:
    response = await api.client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) >= {
        "/v1/projects",
        "/v1/projects/{project_id}",
        "/v1/projects/{project_id}/retry",
        "/v1/projects/{project_id}/cancel",
        "/v1/webhooks/runware/{secret}",
        "/v1/videos/{key}",
    }
    assert {"403", "404", "410"} <= set(paths["/v1/videos/{key}"]["get"]["responses"])
    create = paths["/v1/projects"]["post"]
    assert {"202", "200", "401", "422", "503"} <= set(create["responses"])
    for status in ("401", "422"):
        assert PROBLEM_JSON in create["responses"][status]["content"]
    assert {p["name"] for p in create["parameters"]} >= {"wait", "idempotency-key"}
    assert "404" in paths["/v1/projects/{project_id}"]["get"]["responses"]
    assert (
        PROBLEM_JSON
        in paths["/v1/webhooks/runware/{secret}"]["post"]["responses"]["404"]["content"]
    )
