"""WebSocket tickets: issued by the API, used once by the notifier; revoked keys close sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.clock import server_time_of
from reelflow_common.domain import ClipRequest
from reelflow_common.logging import configure_logging
from reelflow_common.settings import LogSettings
from reelflow_common.store import ApiKeyStore, NewProject, ProjectStore, hash_key
from reelflow_common.store.auth import CachedApiKeyStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_notifier.auth import Credential
from reelflow_notifier.keywatch import KeyWatch
from reelflow_notifier.settings import Settings as NotifierSettings
from tests.integration.api_helpers import Api, assert_problem, running_api
from tests.integration.notifier_helpers import (
    RunningNotifier,
    client,
    close_of,
    receive,
    running_notifier,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def notifier(
    settings_for: Callable[..., Any], api: Api, amqp_connection: Any
) -> AsyncIterator[RunningNotifier]:
    # After ``api``: its indexes exist before the notifier reads the collections.
    # Keys are cached, as in production, but briefly: a revoked key's sockets close
    # within auth_cache_ttl_s + ws_key_check_interval_s.
    settings = settings_for(
        NotifierSettings,
        http_host="127.0.0.1",
        http_port=0,
        ws_key_check_interval_s=0.1,
        auth_cache_ttl_s=0.5,
    )
    async with running_notifier(settings) as running:
        yield running


async def new_key(api: Api) -> str:
    return await api.keys.issue_key(await api.keys.create_tenant("acme"))


async def ticket_for(api: Api, key: str) -> str:
    answer = await api.client.post("/v1/ws-tickets", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.text
    ticket: str = answer.json()["ticket"]
    return ticket


async def new_project(api: Api, key: str) -> str:
    tenant_id = await api.keys.tenant_for_key(key)
    assert tenant_id is not None
    new = NewProject(
        tenant_id=tenant_id, title="t", model="google:3@3", scenes=[ClipRequest(prompt="a tram")]
    )
    return (await ProjectStore(api.db).create(new)).project.id


async def revoke(api: Api, key: str) -> None:
    """What revoking a key comes to for ``tenant_for_key``: it no longer names a tenant."""
    await api.db["api_keys"].delete_one({"_id": hash_key(key)})
    assert await api.keys.tenant_for_key(key) is None


# --- the API -----------------------------------------------------------------------------


async def test_a_ticket_is_issued_for_a_valid_key_and_lives_a_minute(api: Api) -> None:
    key = await new_key(api)
    answer = await api.client.post("/v1/ws-tickets", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["ticket"].startswith("wst_")
    assert len(body["ticket"]) > 40
    assert body["expires_in"] == 60
    expires_at = datetime.fromisoformat(body["expires_at"])
    # On the database's clock, which the api reads once (within a round trip) and carries on.
    lives = expires_at - await server_time_of(api.db)
    assert timedelta(seconds=55) < lives <= timedelta(seconds=60.5)


async def test_tickets_past_a_keys_burst_are_429_with_retry_after_and_nothing_stored(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    # A burst of 2, then one ticket about every 17 minutes: the third is refused
    # however slowly the test runs.
    settings = settings_for(ApiSettings, ws_ticket_burst=2, ws_ticket_rate_per_s=0.001)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        key, other = await new_key(api), await new_key(api)
        for _ in range(2):
            await ticket_for(api, key)
        refused = await api.client.post(
            "/v1/ws-tickets", headers={"Authorization": f"Bearer {key}"}
        )
        others = await api.client.post(
            "/v1/ws-tickets", headers={"Authorization": f"Bearer {other}"}
        )
        stored = await api.db["ws_tickets"].count_documents({})

    problem = assert_problem(refused, 429)
    assert problem["title"] == "Too Many Requests"
    assert "tickets" in problem["detail"]
    assert 999 <= int(refused.headers["Retry-After"]) <= 1000
    assert others.status_code == 201  # another key's tickets are counted apart
    assert stored == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer rf_unknown"}])
async def test_a_ticket_needs_a_valid_key(api: Api, headers: dict[str, str]) -> None:
    assert_problem(await api.client.post("/v1/ws-tickets", headers=headers), 401)


async def test_neither_the_ticket_nor_the_key_is_stored_in_clear(api: Api) -> None:
    key = await new_key(api)
    ticket = await ticket_for(api, key)

    docs = await api.db["ws_tickets"].find().to_list()

    assert len(docs) == 1
    stored = repr(docs[0]).encode()
    assert ticket.encode() not in stored
    assert key.encode() not in stored
    assert docs[0]["_id"] != ticket


# --- the notifier ----------------------------------------------------------------------


async def test_a_ticket_opens_one_socket_only(api: Api, notifier: RunningNotifier) -> None:
    key = await new_key(api)
    project_id = await new_project(api, key)
    ticket = await ticket_for(api, key)
    url = f"{notifier.base_url}/v1/ws/projects/{project_id}?ticket={ticket}"

    async with client(url) as ws:
        snapshot = await receive(ws)
    async with client(url) as again:
        code, _ = await close_of(again)

    assert (snapshot["type"], snapshot["project"]["project_id"]) == ("snapshot", project_id)
    assert code == 4401


async def test_the_multiplexed_socket_takes_a_ticket(api: Api, notifier: RunningNotifier) -> None:
    key = await new_key(api)
    project_id = await new_project(api, key)
    ticket = await ticket_for(api, key)

    async with client(f"{notifier.base_url}/v1/ws?ticket={ticket}") as ws:
        await ws.send(f'{{"type": "subscribe", "project_id": "{project_id}"}}')
        snapshot = await receive(ws)

    assert (snapshot["type"], snapshot["project"]["project_id"]) == ("snapshot", project_id)


@pytest.mark.parametrize("ticket", ["wst_made-up", "not-even-a-ticket", "expired"])
async def test_an_unknown_or_expired_ticket_is_refused_with_4401(
    api: Api, notifier: RunningNotifier, ticket: str
) -> None:
    key = await new_key(api)
    if ticket == "expired":
        tenant_id = await api.keys.tenant_for_key(key)
        assert tenant_id is not None
        past = WsTicketStore(api.db, ttl=timedelta(seconds=-1))
        ticket = (await past.issue(tenant_id, key)).ticket

    async with client(f"{notifier.base_url}/v1/ws?ticket={ticket}") as ws:
        code, reason = await close_of(ws)

    assert code == 4401
    assert "ticket" in reason


async def test_a_ticket_of_a_key_revoked_since_is_refused(
    api: Api, notifier: RunningNotifier
) -> None:
    key = await new_key(api)
    ticket = await ticket_for(api, key)
    await revoke(api, key)

    async with client(f"{notifier.base_url}/v1/ws?ticket={ticket}") as ws:
        code, _ = await close_of(ws)

    assert code == 4401


@pytest.mark.parametrize("how", ["ticket", "header", "token"])
async def test_open_sockets_of_a_revoked_key_close_with_4401(
    api: Api, notifier: RunningNotifier, how: str
) -> None:
    key = await new_key(api)
    other_key = await new_key(api)
    project_id = await new_project(api, key)
    query = {
        "ticket": f"?ticket={await ticket_for(api, key)}",
        "header": "",
        "token": f"?token={key}",
    }[how]
    url = f"{notifier.base_url}/v1/ws/projects/{project_id}{query}"

    async with (
        client(url, key=key if how == "header" else None) as ws,
        client(f"{notifier.base_url}/v1/ws", key=other_key) as bystander,
    ):
        assert (await receive(ws))["type"] == "snapshot"
        await revoke(api, key)
        code, reason = await close_of(ws)

        # Another key's socket stays open and answers.
        await bystander.send('{"type": "unsubscribe", "project_id": "x"}')
        assert (await receive(bystander))["type"] == "unsubscribed"

    assert (code, reason) == (4401, "API key revoked or expired")


class EndedSocket:
    def __init__(self) -> None:
        self.ended: list[tuple[int, str]] = []

    def end(self, code: int, reason: str) -> None:
        self.ended.append((code, reason))


async def test_the_key_watch_sees_a_revocation_once_the_cache_forgets_the_key(api: Api) -> None:
    """Through the notifier's cached store: at most auth_cache_ttl_s late, never later."""
    now = [0.0]
    keys = CachedApiKeyStore(api.db, ttl_s=5, max_entries=10, monotonic=lambda: now[0])
    watch = KeyWatch(keys, interval_s=1)
    key = await new_key(api)
    tenant_id = await keys.tenant_for_key(key)
    assert tenant_id is not None
    socket = EndedSocket()

    with watch.watching(Credential(tenant_id, key), socket):
        await revoke(api, key)
        now[0] += 4.9
        assert await watch.check_all() == 0  # still remembered as valid
        now[0] += 0.1
        assert await watch.check_all() == 1

    assert socket.ended == [(4401, "API key revoked or expired")]


async def test_a_ticket_in_the_url_is_not_logged(
    api: Api, notifier: RunningNotifier, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(log_format="json"), service="notifier")  # as main() does
    key = await new_key(api)
    ticket = await ticket_for(api, key)
    async with client(f"{notifier.base_url}/v1/ws?ticket={ticket}&x=1") as ws:
        await ws.send('{"type": "unsubscribe", "project_id": "x"}')
        await receive(ws)

    logged = capsys.readouterr().err
    accepted = [line for line in logged.splitlines() if "[accepted]" in line]
    assert accepted
    assert all("ticket=***&x=1" in line for line in accepted)
    assert ticket not in logged


async def test_the_api_key_store_is_what_decides(api: Api) -> None:
    """A ticket's grant names the key, so the notifier asks the key store, not the ticket."""
    key = await new_key(api)
    tenant_id = await ApiKeyStore(api.db).tenant_for_key(key)
    assert tenant_id is not None
    store = WsTicketStore(api.db)
    grant = await store.consume((await store.issue(tenant_id, key)).ticket)

    assert grant is not None
    assert (grant.tenant_id, grant.api_key) == (tenant_id, key)
