"""The api's correlation id and per-route metrics, seen as a client and an operator see them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY
from pydantic import SecretStr
from structlog.testing import capture_logs

from reelflow_api.matching import UNMATCHED
from reelflow_api.settings import Settings
from reelflow_common.topology import HEADER_CORRELATION_ID, HTTP_CORRELATION_ID
from tests.integration.api_helpers import Api, running_api

SECRET = "s3cret-webhook-path-segment"
PROJECT_ROUTE = "/v1/projects/{project_id}"


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    settings = settings_for(Settings, webhook_secret=SecretStr(SECRET))
    async with running_api(settings, mongo_db, amqp_connection) as api:
        yield api


def requests_counted(method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("reelflow_http_requests_total", labels) or 0.0


def latencies_observed(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return REGISTRY.get_sample_value("reelflow_http_request_seconds_count", labels) or 0.0


async def test_a_request_without_an_id_gets_one_that_its_messages_carry(api: Api) -> None:
    response = await api.create(await api.tenant())

    given = response.headers[HTTP_CORRELATION_ID]
    assert len(given) == 32
    received = await api.drain()
    assert len(received) == 2
    for message in received:
        assert message.body["correlation_id"] == given
        assert message.headers[HEADER_CORRELATION_ID] == given
    assert (await api.projects.get(response.json()["project_id"])).correlation_id == given  # type: ignore[union-attr]


async def test_each_request_gets_an_id_of_its_own(api: Api) -> None:
    first = await api.client.get("/healthz")
    second = await api.client.get("/healthz")

    assert first.headers[HTTP_CORRELATION_ID] != second.headers[HTTP_CORRELATION_ID]


async def test_the_clients_id_is_adopted_and_returned(api: Api) -> None:
    response = await api.client.get("/v1/projects", headers={HTTP_CORRELATION_ID: "req-42"})

    assert response.status_code == 401
    assert response.headers[HTTP_CORRELATION_ID] == "req-42"


@pytest.mark.parametrize("given", ["has spaces in it", "x" * 129, ""])
async def test_an_implausible_client_id_is_replaced(api: Api, given: str) -> None:
    response = await api.client.get("/healthz", headers={HTTP_CORRELATION_ID: given})

    returned = response.headers[HTTP_CORRELATION_ID]
    assert returned != given
    assert len(returned) == 32


async def test_every_log_line_of_a_request_carries_its_id_and_tenant(api: Api) -> None:
    tenant_id, auth = await api.new_tenant()
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        await api.create(auth, headers={HTTP_CORRELATION_ID: "req-7"})

    created = [line for line in lines if line["event"] == "project_created"]
    assert len(created) == 1
    assert created[0]["correlation_id"] == "req-7"
    assert created[0]["tenant_id"] == tenant_id


async def test_requests_are_counted_and_timed_by_route_template(api: Api) -> None:
    auth = await api.tenant()
    project_id = (await api.create(auth)).json()["project_id"]
    before_ok = requests_counted("GET", PROJECT_ROUTE, 200)
    before_missing = requests_counted("GET", PROJECT_ROUTE, 404)
    timed = latencies_observed("GET", PROJECT_ROUTE)

    assert (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).status_code == 200
    assert (await api.client.get("/v1/projects/nope", headers=auth)).status_code == 404

    assert requests_counted("GET", PROJECT_ROUTE, 200) == before_ok + 1
    assert requests_counted("GET", PROJECT_ROUTE, 404) == before_missing + 1
    assert latencies_observed("GET", PROJECT_ROUTE) == timed + 2


async def test_a_path_no_route_takes_is_counted_as_unmatched(api: Api) -> None:
    before = requests_counted("GET", UNMATCHED, 404)

    for n in range(3):
        assert (await api.client.get(f"/no/such/path/{n}")).status_code == 404

    assert requests_counted("GET", UNMATCHED, 404) == before + 3


async def test_the_webhook_secret_never_reaches_a_metric_label(api: Api) -> None:
    response = await api.client.post(
        f"/v1/webhooks/runware/{SECRET}", params={"project_id": "p1"}, json={"data": []}
    )
    assert response.status_code == 422

    exposition = (await api.client.get("/metrics")).text
    assert SECRET not in exposition
    assert 'route="/v1/webhooks/runware/{secret}"' in exposition


async def test_a_request_refused_before_routing_is_labelled_by_its_route(api: Api) -> None:
    before = requests_counted("POST", "/v1/projects", 413)
    too_large = b"x" * (api.settings.max_body_bytes + 1)
    auth = await api.tenant()  # without a key it is a 401, before any body is looked at

    response = await api.client.post("/v1/projects", content=too_large, headers=auth)

    assert response.status_code == 413
    assert response.headers[HTTP_CORRELATION_ID]
    assert requests_counted("POST", "/v1/projects", 413) == before + 1
