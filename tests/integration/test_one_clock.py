"""Tickets, keys and video links are judged on the database's clock, not the judge's machine's.

The api issues a ticket and the notifier consumes it, each on a machine of its own; an
operator sets a key's expiry from a third. Here the database's clock (``DbClock.now``) is
set ten minutes ahead of this machine's: whatever is decided on this machine's clock
instead comes out ten minutes wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.clock import DbClock
from reelflow_common.mongo import Database
from reelflow_common.storage.links import VideoLinks
from reelflow_common.store import ApiKeyStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_common.store.timefmt import utcnow
from reelflow_notifier.settings import Settings as NotifierSettings
from tests.integration.api_helpers import Api, running_api
from tests.integration.notifier_helpers import RunningNotifier, client, close_of, receive
from tests.integration.notifier_helpers import running_notifier as notifier_running

pytestmark = pytest.mark.integration

#: how far the database's clock runs ahead of this machine's
AHEAD = timedelta(minutes=10)


def db_now() -> datetime:
    return utcnow() + AHEAD


@pytest.fixture
def db_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``DbClock`` of this process reads the database's time as ``AHEAD`` of ours."""
    monkeypatch.setattr(DbClock, "now", lambda _self: db_now())


@pytest.fixture
async def api(
    db_clock_ahead: None, settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    async with running_api(settings_for(ApiSettings), mongo_db, amqp_connection) as api:
        yield api


@pytest.fixture
async def notifier(settings_for: Callable[..., Any], api: Api) -> AsyncIterator[RunningNotifier]:
    # After ``api``: its indexes exist before the notifier reads the collections.
    settings = settings_for(NotifierSettings, http_host="127.0.0.1", http_port=0)
    async with notifier_running(settings) as running:
        yield running


async def test_a_ticket_expires_when_the_database_says_whoever_checks_it(
    mongo_db: Database,
) -> None:
    """Issued by one store and consumed by another: the consumer's clock decides, and in the
    services every store's clock is the database's."""
    issued_at = db_now()
    issuer = WsTicketStore(mongo_db, clock=lambda: issued_at)
    await issuer.ensure_indexes()
    within = WsTicketStore(mongo_db, clock=lambda: issued_at + timedelta(seconds=59))
    past = WsTicketStore(mongo_db, clock=lambda: issued_at + timedelta(seconds=61))

    first = await issuer.issue("t1", "rf_key")
    second = await issuer.issue("t1", "rf_key")

    assert first.expires_at == issued_at + timedelta(seconds=60)
    assert await within.consume(first.ticket) is not None
    # Valid for nine more minutes on this machine's clock: refused all the same.
    assert await past.consume(second.ticket) is None


async def test_the_api_issues_tickets_on_the_databases_clock_and_the_notifier_checks_them_on_it(
    api: Api, notifier: RunningNotifier
) -> None:
    key = await api.keys.issue_key(await api.keys.create_tenant("acme"))
    answer = await api.client.post("/v1/ws-tickets", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.text
    lives = datetime.fromisoformat(answer.json()["expires_at"]) - db_now()
    assert timedelta(seconds=55) < lives <= timedelta(seconds=60)

    async with client(f"{notifier.base_url}/v1/ws?ticket={answer.json()['ticket']}") as ws:
        await ws.send('{"type": "unsubscribe", "project_id": "x"}')
        assert (await receive(ws))["type"] == "unsubscribed"

    # Expired a second ago on the database's clock, yet ten minutes ahead on this machine's.
    tenant_id = await api.keys.tenant_for_key(key)
    assert tenant_id is not None
    late = WsTicketStore(api.db, ttl=timedelta(seconds=-1), clock=db_now)
    expired = (await late.issue(tenant_id, key)).ticket
    async with client(f"{notifier.base_url}/v1/ws?ticket={expired}") as ws:
        code, reason = await close_of(ws)
    assert code == 4401
    assert "ticket" in reason


async def test_a_key_expired_on_the_databases_clock_is_refused_by_the_api_and_the_notifier(
    api: Api, notifier: RunningNotifier
) -> None:
    keys = ApiKeyStore(api.db, clock=db_now)
    tenant_id = await keys.create_tenant("acme")
    # Expired a second ago on the database's clock, yet ten minutes ahead on this machine's.
    key, info = await keys.create_key(tenant_id, expires_at=db_now() - timedelta(seconds=1))
    assert info.created_at - utcnow() > AHEAD - timedelta(seconds=5)

    refused = await api.client.get("/v1/projects", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    async with client(f"{notifier.base_url}/v1/ws", key=key) as ws:
        assert (await close_of(ws))[0] == 4401


async def test_the_api_judges_a_video_link_on_the_databases_clock(
    db_clock_ahead: None,
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    tmp_path: Path,
) -> None:
    """A link signed on this machine's clock (a notifier or poller out of step) for a minute
    has expired ten minutes ago on the database's: the api that checks it says so."""
    secret = "a video secret"
    storage = tmp_path / "videos"
    key = "videos/p/0/t.mp4"
    (storage / key).parent.mkdir(parents=True)
    (storage / key).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    settings = settings_for(
        ApiSettings, storage_backend="local", storage_dir=str(storage), video_url_secret=secret
    )
    on_database = VideoLinks(secret.encode(), ttl_s=60, clock=db_now)
    on_this_machine = VideoLinks(secret.encode(), ttl_s=60, clock=utcnow)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        fresh = await api.client.get(on_database.url(key))
        stale = await api.client.get(on_this_machine.url(key))

    assert fresh.status_code == 200, fresh.text
    assert stale.status_code == 410, stale.text
