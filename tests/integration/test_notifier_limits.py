"""The notifier's abuse limits, as a client sees them: subscribes past the rate, sockets, watches
and subscribes per key, slow clients."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from websockets.exceptions import ConnectionClosed

from reelflow_common.domain import ClipRequest
from reelflow_common.store import ApiKeyStore, NewProject, ProjectStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_notifier.settings import Settings
from tests.integration.key_reads import key_reads
from tests.integration.notifier_helpers import (
    RunningNotifier,
    client,
    close_of,
    metric,
    receive,
    running_notifier,
)
from tests.waiting import DEADLINE_S, eventually, eventually_returns

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


# --- sockets per replica ------------------------------------------------------------------


async def test_a_socket_past_the_replicas_cap_is_closed_with_1013_before_its_key_is_looked_up(
    settings_for: Callable[..., Any],
    amqp_connection: Any,
    new_tenant: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two sockets per replica, whatever their keys. A socket refused for another reason
    gives its place back, and so does one that closes, once the server has seen it."""
    tenant, other = await new_tenant(), await new_tenant()
    project_id, theirs = await tenant.new_project(), await other.new_project()
    refusals_before = metric("reelflow_ws_refusals_total", limit="connections")
    async with (
        notifier_with(settings_for, ws_max_connections=2) as notifier,
        AsyncExitStack() as held,
    ):
        url = f"{notifier.base_url}/v1/ws/projects/{project_id}"
        their_url = f"{notifier.base_url}/v1/ws/projects/{theirs}"
        reads = key_reads(notifier.app.state.notifier.api_keys, monkeypatch, held=lambda _k: False)
        full: list[tuple[int, str]] = []  # 1013s met while waiting for a place

        async def admitted(socket_url: str, key: str) -> Any:
            """A socket of ``key``, open with its snapshot read; None when refused as full."""
            ws = await held.enter_async_context(client(socket_url, key=key))
            try:
                first = await receive(ws)
            except ConnectionClosed:
                full.append((ws.close_code or 0, ws.close_reason or ""))
                assert ws.close_code == 1013, full[-1]
                return None
            assert first["type"] == "snapshot"
            return ws

        async def refused(socket_url: str, key: str) -> int | None:
            """The close code of a socket refused; None when refused as full (a place that
            the last one refused has not given back yet)."""
            async with client(socket_url, key=key) as ws:
                code, reason = await close_of(ws)
            if code == 1013:
                full.append((code, reason))
                return None
            return code

        one = await eventually_returns(lambda: admitted(url, tenant.key), "a first socket")
        # Refused for their own reasons while one place is free: each gives it back.
        refused_otherwise = []
        for refused_url, key in (
            (url, "rf_wrong-key"),
            (f"{url}?after_seq=x", tenant.key),
            (their_url, tenant.key),  # another tenant's project
        ):
            code = await eventually_returns(
                functools.partial(refused, refused_url, key), f"a refusal at {refused_url}"
            )
            refused_otherwise.append(code)
        await eventually_returns(
            lambda: admitted(their_url, other.key), "a second socket, another key's"
        )
        with structlog.testing.capture_logs() as lines:
            async with client(url, key="rf_never-looked-up") as third:
                past_the_cap = await close_of(third)
        # One of the two closes: its place is free once the server has seen the close.
        await one.close()
        reopened = await eventually_returns(
            lambda: admitted(url, tenant.key), "a socket again, once one closed"
        )
        cap_gauge = metric("reelflow_ws_connections_max")

    assert refused_otherwise == [4401, 4400, 4404]
    assert past_the_cap == (1013, "server full; reconnect later")
    assert all(refusal == past_the_cap for refusal in full)
    assert "rf_never-looked-up" not in reads.asked
    assert [
        (line["log_level"], line.get("cap"))
        for line in lines
        if line["event"] == "ws_connections_full"
    ] == [("warning", 2)]
    assert reopened is not None
    refusals = metric("reelflow_ws_refusals_total", limit="connections") - refusals_before
    assert refusals == 1 + len(full)
    assert cap_gauge == 2


# --- what one key does on all of its sockets -----------------------------------------------


@asynccontextmanager
async def notifier_with(
    settings_for: Callable[..., Any], **limits: Any
) -> AsyncIterator[RunningNotifier]:
    settings = settings_for(Settings, http_host="127.0.0.1", http_port=0, **limits)
    async with running_notifier(settings) as running:
        yield running


async def test_subscribes_spread_over_a_keys_sockets_share_one_budget_that_closing_keeps(
    settings_for: Callable[..., Any], amqp_connection: Any, new_tenant: Callable[[], Any]
) -> None:
    """Each socket may send 2 at once, the key 3 in all; then about one every 17 minutes."""
    limits = {
        "ws_subscribe_burst": 2,
        "ws_max_subscriptions": 2,
        "ws_subscribe_rate_per_s": 0.001,
        "ws_key_subscribe_burst": 3,
        "ws_key_subscribe_rate_per_s": 0.001,
    }
    tenant, other = await new_tenant(), await new_tenant()
    first, second, third, fourth = [await tenant.new_project() for _ in range(4)]
    theirs = await other.new_project()
    async with notifier_with(settings_for, **limits) as notifier:
        url = f"{notifier.base_url}/v1/ws"
        async with client(url, key=tenant.key) as one, client(url, key=tenant.key) as two:
            await one.send(subscribe(first))
            await one.send(subscribe(second))
            snapshots = [await receive(one), await receive(one)]
            await two.send(subscribe(third))
            snapshots.append(await receive(two))
            # The second socket has sent one of its two: the key's budget is what is spent.
            await two.send(subscribe(fourth))
            refused = await receive(two)
        # Sockets that close and open again find the key's budget as they left it.
        async with client(url, key=tenant.key) as again:
            await again.send(subscribe(fourth))
            refused_again = await receive(again)
        async with client(url, key=other.key) as another_key:
            await another_key.send(subscribe(theirs))
            their_answer = await receive(another_key)

    assert [(m["type"], m["project"]["project_id"]) for m in snapshots] == [
        ("snapshot", first),
        ("snapshot", second),
        ("snapshot", third),
    ]
    for answer in (refused, refused_again):
        assert (answer["type"], answer["project_id"]) == ("error", fourth)
        assert "too many subscribes with this API key" in answer["message"]
        assert answer["retry_after_s"] == pytest.approx(1000, abs=1)
    assert (their_answer["type"], their_answer["project"]["project_id"]) == ("snapshot", theirs)


async def test_a_subscribe_past_the_projects_a_key_may_watch_is_refused_until_one_is_let_go(
    settings_for: Callable[..., Any], amqp_connection: Any, new_tenant: Callable[[], Any]
) -> None:
    """Two watches for the key, over all its sockets; a single-project socket's counts too."""
    limits = {"ws_max_subscriptions": 2, "ws_subscribe_burst": 10, "ws_max_watches_per_key": 2}
    tenant, other = await new_tenant(), await new_tenant()
    first, second, third = [await tenant.new_project() for _ in range(3)]
    theirs = await other.new_project()
    async with notifier_with(settings_for, **limits) as notifier:
        url = f"{notifier.base_url}/v1/ws"
        async with client(url, key=tenant.key) as multiplexed:
            await multiplexed.send(subscribe(first))
            assert (await receive(multiplexed))["type"] == "snapshot"
            single_url = f"{notifier.base_url}/v1/ws/projects/{second}"
            async with client(single_url, key=tenant.key) as single:
                assert (await receive(single))["type"] == "snapshot"
                await multiplexed.send(subscribe(third))
                refused = await receive(multiplexed)
                # Subscribing again to a project it watches takes no more.
                await multiplexed.send(subscribe(first))
                resubscribed = await receive(multiplexed)
                async with client(url, key=other.key) as another_key:
                    await another_key.send(subscribe(theirs))
                    their_answer = await receive(another_key)
            # The single-project socket closed: its watch is given back once the server saw it.
            let_go = await eventually_returns(
                lambda: _snapshot_of(multiplexed, third), "a watch again, once one was let go"
            )

    assert (refused["type"], refused["project_id"]) == ("error", third)
    assert "already watches 2 projects" in refused["message"]
    assert "unsubscribe" in refused["message"]
    assert "retry_after_s" not in refused
    assert (resubscribed["type"], resubscribed["project"]["project_id"]) == ("snapshot", first)
    assert their_answer["type"] == "snapshot"
    assert let_go["project"]["project_id"] == third


async def _snapshot_of(ws: Any, project_id: str) -> dict[str, Any] | None:
    """The answer to a subscribe to ``project_id``: its snapshot, or None when refused."""
    await ws.send(subscribe(project_id))
    answer = await receive(ws)
    if answer["type"] == "error":
        assert "already watches" in answer["message"]
        return None
    return answer


# --- keys the replica has not seen --------------------------------------------------------


#: keys not known to be valid the notifier looks up at once, by default
LOOKUPS: int = Settings.model_fields["auth_key_lookups_at_once"].default


async def test_a_key_met_while_wrong_keys_are_looked_up_is_closed_with_1013_not_queued(
    settings_for: Callable[..., Any],
    amqp_connection: Any,
    new_tenant: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It waited in a queue with no end; a valid key this replica had not seen (after a
    # deploy) waited behind every wrong one.
    tenant = await new_tenant()
    async with notifier_with(settings_for) as notifier:
        url = f"{notifier.base_url}/v1/ws/projects/{await tenant.new_project()}"
        reads = key_reads(
            notifier.app.state.notifier.api_keys,
            monkeypatch,
            held=lambda key: key.startswith("rf_wrong-"),
        )
        async with AsyncExitStack() as flood:
            wrong = [
                await flood.enter_async_context(client(url, key=f"rf_wrong-{i}"))
                for i in range(LOOKUPS)
            ]
            await eventually(lambda: len(reads.started) == LOOKUPS, "the wrong keys' lookups")
            async with client(url, key=tenant.key) as valid:
                refused = await close_of(valid)
            # Another socket of a key being looked up shares its lookup: never refused.
            same_key = await flood.enter_async_context(client(url, key="rf_wrong-0"))
            await eventually(lambda: reads.asked.count("rf_wrong-0") == 2, "its second ask")
            reads.release.set()
            closes = [await close_of(ws) for ws in [*wrong, same_key]]
        async with client(url, key=tenant.key) as valid:
            first = await receive(valid)

    assert refused == (1013, "server busy; reconnect later")
    assert [code for code, _reason in closes] == [4401] * (LOOKUPS + 1)
    assert first["type"] == "snapshot"
    assert reads.started == [f"rf_wrong-{i}" for i in range(LOOKUPS)] + [tenant.key]


async def test_sockets_of_a_new_key_opened_together_cost_one_lookup_and_are_all_served(
    settings_for: Callable[..., Any],
    amqp_connection: Any,
    new_tenant: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each was a lookup of its own: with the 9th such lookup refused, one new key's
    # concurrent sockets were closed 1013 (the quick bench's 10,000 sockets of one key).
    sockets = 20  # more than the lookups at once
    tenant = await new_tenant()
    async with notifier_with(settings_for, auth_cache_ttl_s=600) as notifier:
        url = f"{notifier.base_url}/v1/ws/projects/{await tenant.new_project()}"
        reads = key_reads(notifier.app.state.notifier.api_keys, monkeypatch, held=lambda _k: True)
        async with AsyncExitStack() as stack:
            opened = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        stack.enter_async_context(client(url, key=tenant.key))
                        for _ in range(sockets)
                    )
                ),
                DEADLINE_S,
            )
            await eventually(lambda: len(reads.asked) == sockets, "every socket's ask")
            reads.release.set()
            first = [await receive(ws) for ws in opened]

    assert [message["type"] for message in first] == ["snapshot"] * sockets
    assert reads.started == [tenant.key]


# --- slow clients -------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_or_its_headers_slowly_is_cut_off_not_a_websocket(
    settings_for: Callable[..., Any], amqp_connection: Any, new_tenant: Callable[[], Any]
) -> None:
    tenant = await new_tenant()
    async with notifier_with(settings_for, http_header_timeout_s=0.5) as notifier:
        port = int(notifier.http_url.rsplit(":", 1)[1])
        async with client(f"{notifier.base_url}/v1/ws", key=tenant.key) as websocket:
            silent = await asyncio.open_connection("127.0.0.1", port)
            trickling = await asyncio.open_connection("127.0.0.1", port)
            trickling[1].write(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            await trickling[1].drain()
            answers = [await _read_all(silent[0]), await _read_all(trickling[0])]
            for _reader, writer in (silent, trickling):
                writer.close()
            # Opened before both, the WebSocket outlived their deadline and still answers.
            await websocket.send("not json")
            still_open = await receive(websocket)

    assert answers == [b"", b""]  # closed without an answer
    assert still_open["type"] == "error"


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), DEADLINE_S)
