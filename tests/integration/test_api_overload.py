"""The API in-process under overload: 202 or an immediate 503 with Retry-After, never a 500.

The requests admitted are held at a gate inside the project store, so "the
refused ones were answered at once" is an order of events, not a timing: every
503 arrives while the admitted requests are still blocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from reelflow_api.deps import AppState
from reelflow_api.settings import Settings
from reelflow_common.store import ProjectStore
from reelflow_common.store.auth import key_id
from tests.integration.api_helpers import Api, assert_problem, running_api
from tests.integration.key_reads import key_reads
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration

LIMIT = 5
WAITERS = 2
#: slots one key may hold (the fixture's default leaves every slot to one key)
PER_KEY = 3
#: slots one tenant may hold, all its keys together (fewer than LIMIT, as it must be)
PER_TENANT = LIMIT - 1


@pytest.fixture
async def api(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> AsyncIterator[Api]:
    settings = settings_for(
        Settings, max_in_flight=LIMIT, max_in_flight_per_tenant=PER_TENANT, max_waiters=WAITERS
    )
    async with running_api(settings, mongo_db, amqp_connection) as api:
        yield api


class GatedStore:
    """The app's project store, except that ``create`` waits at ``gate``."""

    def __init__(self, store: ProjectStore) -> None:
        self._store = store
        self.gate = asyncio.Event()
        self.entered = 0

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        self.entered += 1
        await self.gate.wait()
        return await self._store.create(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def gated_creates(api: Api) -> Iterator[GatedStore]:
    state: AppState = api.app.state.reelflow
    gated = GatedStore(state.projects)
    # A delegating stand-in, not a ProjectStore subclass: the cast says so.
    api.app.state.reelflow = dataclasses.replace(state, projects=cast(ProjectStore, gated))
    try:
        yield gated
    finally:
        gated.gate.set()
        api.app.state.reelflow = state


def waiting_gauge() -> float:
    return REGISTRY.get_sample_value("reelflow_api_requests_waiting") or 0.0


async def test_1000_concurrent_creates_get_202_or_an_immediate_503(api: Api) -> None:
    # From two tenants in turn: one alone may hold only PER_TENANT of the slots.
    tenants = [await api.tenant(), await api.tenant()]
    with gated_creates(api) as gated:
        requests = [asyncio.create_task(api.create(tenants[i % 2])) for i in range(1000)]

        def refused_all_answered() -> bool:
            return sum(request.done() for request in requests) == 1000 - LIMIT

        await eventually(lambda: gated.entered == LIMIT, "the admitted requests at the gate")
        await eventually(refused_all_answered, "every refused request answered")
        # The API is full, and the probes still answer.
        assert (await api.client.get("/healthz")).status_code == 200
        assert (await api.client.get("/readyz")).status_code == 200
        assert gated.entered == LIMIT
        refused = [request.result() for request in requests if request.done()]
        gated.gate.set()
        answers: list[httpx.Response] = await asyncio.wait_for(
            asyncio.gather(*requests), DEADLINE_S
        )

    for response in refused:
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
    statuses = Counter(response.status_code for response in answers)
    assert statuses == {202: LIMIT, 503: 1000 - LIMIT}
    assert len(await api.drain()) == 2 * LIMIT  # two scenes per project


async def test_a_post_waiting_for_its_clips_does_not_hold_an_in_flight_slot(api: Api) -> None:
    auth = await api.tenant()
    other = await api.tenant()  # one tenant may hold only PER_TENANT of the slots
    waiting = [asyncio.create_task(api.create(auth, wait=60)) for _ in range(WAITERS)]
    try:
        await eventually(lambda: waiting_gauge() == WAITERS, "the POSTs waiting")
        with gated_creates(api) as gated:
            creates = [asyncio.create_task(api.create(auth)) for _ in range(PER_TENANT)]
            creates.append(asyncio.create_task(api.create(other)))
            await eventually(lambda: gated.entered == LIMIT, "every create admitted")
            one_more = await api.create(auth)
            gated.gate.set()
            answers = await asyncio.wait_for(asyncio.gather(*creates), DEADLINE_S)
        assert_problem(one_more, 503)
        assert [answer.status_code for answer in answers] == [202] * LIMIT
        assert not any(request.done() for request in waiting)
    finally:
        for request in waiting:
            request.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_a_post_finding_too_many_waiters_answers_at_once(api: Api) -> None:
    auth = await api.tenant()
    waiting = [asyncio.create_task(api.create(auth, wait=60)) for _ in range(WAITERS)]
    try:
        await eventually(lambda: waiting_gauge() == WAITERS, "the POSTs waiting")

        response = await api.create(auth, wait=60)

        assert response.status_code == 202
        assert response.json()["pending"] == 2
        assert not any(request.done() for request in waiting)
    finally:
        for request in waiting:
            request.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_one_keys_flood_gets_429_and_leaves_slots_for_another_key(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(
        Settings,
        max_in_flight=LIMIT,
        max_in_flight_per_key=PER_KEY,
        max_in_flight_per_tenant=PER_TENANT,
    )
    async with running_api(settings, mongo_db, amqp_connection) as api:
        flooder, other = await api.tenant(), await api.tenant()
        key = flooder["Authorization"].removeprefix("Bearer ")
        # One key however its header is spelled: the routes read all of these alike.
        schemes = ("Bearer", "bearer", "BEARER ")
        spellings = [{"Authorization": f"{scheme} {key}"} for scheme in schemes]
        with gated_creates(api) as gated, capture_logs() as lines:
            flood = [asyncio.create_task(api.create(spellings[i % 3])) for i in range(20)]
            await eventually(lambda: gated.entered == PER_KEY, "the flooder's admitted creates")
            await eventually(
                lambda: sum(request.done() for request in flood) == 20 - PER_KEY,
                "the rest of the flood answered",
            )
            others = [asyncio.create_task(api.create(other)) for _ in range(LIMIT - PER_KEY)]
            await eventually(lambda: gated.entered == LIMIT, "the other key's creates admitted")
            one_more = await api.create(other)  # the API is full now
            gated.gate.set()
            answers = await asyncio.wait_for(asyncio.gather(*flood, *others), DEADLINE_S)
        # Its requests over, the key holds no slot: as many at once are admitted again.
        again = await asyncio.gather(*(api.create(flooder) for _ in range(PER_KEY)))

    flooded = Counter(response.status_code for response in answers[:20])
    assert flooded == {202: PER_KEY, 429: 20 - PER_KEY}
    refused = next(response for response in answers[:20] if response.status_code == 429)
    assert_problem(refused, 429)
    assert refused.headers["retry-after"] == "1"
    assert [response.status_code for response in answers[20:]] == [202] * (LIMIT - PER_KEY)
    assert_problem(one_more, 503)
    assert [response.status_code for response in again] == [202] * PER_KEY
    # The sheds are logged by the key's id, sampled (not a line per request), never the key.
    shed = [line for line in lines if line["event"] == "request_shed"]
    assert 1 <= len(shed) < 20 - PER_KEY
    assert {(line["limit"], line["key_id"]) for line in shed} == {("per_key", key_id(key))}
    assert key not in str(lines)


class SlowBody:
    """A request body that sends ``{`` and then nothing until released: a slow client's."""

    def __init__(self, release: asyncio.Event) -> None:
        self._release = release
        #: the API asked for more than the first byte: it is reading the body
        self.reading = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        self.reading = True
        await self._release.wait()
        yield b"}"


@pytest.mark.parametrize("key", [None, "rf_made-up-"], ids=["no-key", "made-up-keys"])
async def test_slow_bodies_without_a_valid_key_hold_no_slot(api: Api, key: str | None) -> None:
    auth = await api.tenant()
    release = asyncio.Event()
    bodies = [SlowBody(release) for _ in range(LIMIT)]
    # Each with a key of its own, as a flood of guessed keys would be.
    headers = [{} if key is None else {"Authorization": f"Bearer {key}{i}"} for i in range(LIMIT)]
    slow = [
        asyncio.create_task(api.client.post("/v1/projects", content=body, headers=header))
        for body, header in zip(bodies, headers, strict=True)
    ]
    try:
        await eventually(
            lambda: all(
                task.done() or body.reading for task, body in zip(slow, bodies, strict=True)
            ),
            "every slow request answered, or its body being read",
        )

        response = await api.client.get("/v1/projects", headers=auth)

        assert response.status_code == 200, response.text
        assert not any(body.reading for body in bodies)
        for task in slow:
            assert_problem(task.result(), 401)
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), DEADLINE_S)


async def answered_or_reading(request: asyncio.Task[httpx.Response], body: SlowBody) -> None:
    await eventually(
        lambda: request.done() or body.reading, "the slow request answered, or its body read"
    )


async def test_one_tenants_slow_bodies_with_two_keys_leave_slots_for_other_tenants(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    """Two keys of one tenant (as during a rotation), each under the per-key cap, sending
    bodies slowly: together they hold at most the tenant's share of the slots, the next is
    429 at once, and another tenant's requests are still served (not 503)."""
    per_key, per_tenant = 3, 3  # two keys could hold 6 slots: more than LIMIT
    settings = settings_for(
        Settings,
        max_in_flight=LIMIT,
        max_in_flight_per_key=per_key,
        max_in_flight_per_tenant=per_tenant,
    )
    async with running_api(settings, mongo_db, amqp_connection) as api:
        tenant_id, first = await api.new_tenant("rotating")
        second = {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"}
        other = await api.tenant("other")
        release = asyncio.Event()
        bodies = [SlowBody(release) for _ in range(2 * per_key)]
        shed_before = REGISTRY.get_sample_value("reelflow_api_requests_tenant_shed_total") or 0.0
        slow: list[asyncio.Task[httpx.Response]] = []
        with capture_logs() as lines:
            try:
                # One after another, the keys in turn: each request answered or its body being read.
                for i, body in enumerate(bodies):
                    auth = (first, second)[i % 2]
                    slow.append(
                        asyncio.create_task(
                            api.client.post("/v1/projects", content=body, headers=auth)
                        )
                    )
                    await answered_or_reading(slow[-1], body)
                refused = [task.result() for task in slow if task.done()]
                reading = sum(body.reading for body in bodies)

                listed = await api.client.get("/v1/projects", headers=other)
                config = await api.client.get("/v1/config")
            finally:
                release.set()
                await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), DEADLINE_S)

    assert reading == per_tenant
    assert len(refused) == 2 * per_key - per_tenant
    for response in refused:
        problem = assert_problem(response, 429)
        assert response.headers["retry-after"] == "1"
        assert "tenant" in problem["detail"]
    shed = REGISTRY.get_sample_value("reelflow_api_requests_tenant_shed_total") or 0.0
    assert shed - shed_before == len(refused)
    # Logged by tenant (sampled: tests/unit/test_api_shed_log.py), with the key's id.
    logged = [line for line in lines if line["event"] == "request_shed"]
    assert logged
    keys = {key_id(auth["Authorization"].removeprefix("Bearer ")) for auth in (first, second)}
    for line in logged:
        assert (line["limit"], line["tenant_id"]) == ("per_tenant", tenant_id)
        assert line["key_id"] in keys
    assert listed.status_code == 200, listed.text
    assert config.status_code == 200, config.text


#: keys not known to be valid the API looks up at once, by default
LOOKUPS: int = Settings.model_fields["auth_key_lookups_at_once"].default


async def test_a_wrong_key_past_the_lookups_at_once_is_a_503_at_once_holding_no_slot(
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It waited for a lookup in its slot: a flood of random keys kept every slot full, and a
    # valid key the replica had not seen waited behind it.
    settings = settings_for(
        Settings, max_in_flight=LOOKUPS + 3, max_in_flight_per_tenant=LOOKUPS + 2
    )
    async with running_api(settings, mongo_db, amqp_connection) as api:
        known = await api.tenant()
        assert (await api.client.get("/v1/projects", headers=known)).status_code == 200
        reads = key_reads(
            api.app.state.reelflow.api_keys,
            monkeypatch,
            held=lambda key: key.startswith("rf_wrong-"),
        )
        wrong = [{"Authorization": f"Bearer rf_wrong-{i}"} for i in range(LOOKUPS)]
        shed_before = REGISTRY.get_sample_value("reelflow_api_requests_shed_total") or 0.0
        flood = [asyncio.create_task(api.client.get("/v1/projects", headers=h)) for h in wrong]
        held = list(flood)
        try:
            await eventually(lambda: len(reads.started) == len(wrong), "the wrong keys' lookups")
            one_more = asyncio.create_task(
                api.client.get("/v1/projects", headers={"Authorization": "Bearer rf_one-more"})
            )
            await eventually(one_more.done, "an answer to one more key, the lookups still held")
            shed = REGISTRY.get_sample_value("reelflow_api_requests_shed_total") or 0.0
            # A request of a key being looked up shares its lookup: never refused.
            held.append(asyncio.create_task(api.client.get("/v1/projects", headers=wrong[0])))
            await eventually(lambda: reads.asked.count("rf_wrong-0") == 2, "its second ask")
            # Slots are left for keys the replica knows.
            served = await api.client.get("/v1/projects", headers=known)
        finally:
            reads.release.set()
            answers = await asyncio.wait_for(asyncio.gather(*held), DEADLINE_S)

    problem = assert_problem(one_more.result(), 503)
    assert one_more.result().headers["retry-after"] == "1"
    assert "API keys" in problem["detail"]
    assert shed - shed_before == 1  # the overload alert counts it
    assert served.status_code == 200
    assert [response.status_code for response in answers] == [401] * (LOOKUPS + 1)
    assert reads.started == [f"rf_wrong-{i}" for i in range(LOOKUPS)]


async def test_concurrent_requests_of_a_new_key_cost_one_lookup_and_are_all_served(
    settings_for: Callable[..., Any],
    mongo_db: Any,
    amqp_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each was a lookup of its own, and took one of the lookups at once.
    requests = 20  # more than the lookups at once, fewer than one key's slots (24)
    settings = settings_for(Settings, auth_cache_ttl_s=600)
    assert LOOKUPS < requests <= settings.max_in_flight_per_key
    async with running_api(settings, mongo_db, amqp_connection) as api:
        auth = await api.tenant()
        key = auth["Authorization"].removeprefix("Bearer ")
        reads = key_reads(api.app.state.reelflow.api_keys, monkeypatch, held=lambda _key: True)
        pending = [
            asyncio.create_task(api.client.get("/v1/projects", headers=auth))
            for _ in range(requests)
        ]
        try:
            await eventually(lambda: len(reads.asked) == requests, "every request's ask")
        finally:
            reads.release.set()
            answers = await asyncio.wait_for(asyncio.gather(*pending), DEADLINE_S)

    assert [response.status_code for response in answers] == [200] * requests
    assert reads.started == [key]
