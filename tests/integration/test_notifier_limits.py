"""The notifier's abuse limits, as a client sees them: subscribes past the rate, sockets per key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from reelflow_common.domain import ClipRequest
from reelflow_common.store import ApiKeyStore, NewProject, ProjectStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_notifier.settings import Settings
from tests.integration.notifier_helpers import (
    RunningNotifier,
    client,
    close_of,
    receive,
    running_notifier,
)
from tests.waiting import eventually_returns

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    key: str
    projects: ProjectStore

    async def new_project(self) -> str:
        new = NewProject(
            tenant_id=self.tenant_id,
            title="t",
            model="google:3@3",
            scenes=[ClipRequest(prompt="a tram")],
        )
        return (await self.projects.create(new)).project.id


@pytest.fixture
async def notifier(
    settings_for: Callable[..., Any], amqp_connection: Any
) -> AsyncIterator[RunningNotifier]:
    # A burst of 2 subscribes (a socket watches 2 projects at most), then about one every
    # 17 minutes: the third is refused however slowly the test runs. Two sockets per key.
    settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        ws_subscribe_burst=2,
        ws_max_subscriptions=2,
        ws_subscribe_rate_per_s=0.001,
        ws_max_connections_per_key=2,
    )
    async with running_notifier(settings) as running:
        yield running


@pytest.fixture
async def new_tenant(mongo_db: Any) -> Callable[[], Any]:
    api_keys = ApiKeyStore(mongo_db)

    async def make() -> Tenant:
        tenant_id = await api_keys.create_tenant("acme")
        return Tenant(tenant_id, await api_keys.issue_key(tenant_id), ProjectStore(mongo_db))

    return make


def subscribe(project_id: str) -> str:
    return json.dumps({"type": "subscribe", "project_id": project_id})


# --- subscribes ---------------------------------------------------------------------------


async def test_a_subscribe_past_the_connections_burst_is_refused_with_when_to_resend_it(
    notifier: RunningNotifier, new_tenant: Callable[[], Any]
) -> None:
    """Only subscribes count (the rest read nothing), and each connection has its own."""
    tenant = await new_tenant()
    first, second, third = [await tenant.new_project() for _ in range(3)]
    async with client(f"{notifier.base_url}/v1/ws", key=tenant.key) as ws:
        await ws.send(json.dumps({"type": "unsubscribe", "project_id": first}))
        await ws.send("not json")
        uncounted = [await receive(ws), await receive(ws)]
        await ws.send(subscribe(first))
        await ws.send(subscribe(second))
        snapshots = [await receive(ws), await receive(ws)]
        # Room to watch one more, but the burst is spent.
        await ws.send(json.dumps({"type": "unsubscribe", "project_id": second}))
        unsubscribed = await receive(ws)
        await ws.send(subscribe(third))
        refused = await receive(ws)
        # Not applied: a snapshot of it would come before the answer to the next message.
        await ws.send("not json")
        next_message = await receive(ws)
    async with client(f"{notifier.base_url}/v1/ws", key=tenant.key) as ws:
        await ws.send(subscribe(third))
        on_another_connection = await receive(ws)

    assert [m["type"] for m in uncounted] == ["unsubscribed", "error"]
    assert [(m["type"], m["project"]["project_id"]) for m in snapshots] == [
        ("snapshot", first),
        ("snapshot", second),
    ]
    assert unsubscribed["type"] == "unsubscribed"
    assert refused["type"] == "error"
    assert refused["project_id"] == third
    assert "too many subscribes" in refused["message"]
    assert refused["retry_after_s"] == pytest.approx(1000, abs=1)
    assert (next_message["type"], "project_id" in next_message) == ("error", False)
    assert "invalid" in next_message["message"]
    assert (on_another_connection["type"], on_another_connection["project"]["project_id"]) == (
        "snapshot",
        third,
    )


# --- sockets per key ----------------------------------------------------------------------


@pytest.mark.parametrize("third_by", ["header", "token", "ticket"])
async def test_a_socket_past_its_keys_cap_is_closed_with_4429_until_one_of_them_closes(
    notifier: RunningNotifier, new_tenant: Callable[[], Any], mongo_db: Any, third_by: str
) -> None:
    tenant, other = await new_tenant(), await new_tenant()
    project_id = await tenant.new_project()
    url = f"{notifier.base_url}/v1/ws/projects/{project_id}"
    if third_by == "ticket":
        ticket = (await WsTicketStore(mongo_db).issue(tenant.tenant_id, tenant.key)).ticket
        third_url, third_key = f"{url}?ticket={ticket}", None
    elif third_by == "token":
        third_url, third_key = f"{url}?token={tenant.key}", None
    else:
        third_url, third_key = url, tenant.key

    async with client(url, key=tenant.key) as one, client(url, key=tenant.key) as two:
        assert (await receive(one))["type"] == (await receive(two))["type"] == "snapshot"
        async with client(third_url, key=third_key) as third:
            code, reason = await close_of(third)
        # Another key's sockets are not counted with these.
        async with client(f"{notifier.base_url}/v1/ws", key=other.key) as theirs:
            await theirs.send("not json")
            answer = await receive(theirs)

        # A socket that closes gives its slot back (once the server has seen the close).
        await two.close()
        reopened = await eventually_returns(
            lambda: _first_message(url, tenant.key), "a socket again, once one closed"
        )

    assert code == 4429
    assert "2 connections" in reason
    assert "API key" in reason
    assert answer["type"] == "error"
    assert reopened["type"] == "snapshot"


async def _first_message(url: str, key: str) -> dict[str, Any] | None:
    """The first message of a new socket; None when it is refused for its key's cap."""
    async with client(url, key=key) as ws:
        try:
            return await receive(ws)
        except ConnectionClosed:
            assert ws.close_code == 4429
            return None
