"""Per-tenant limits, checked before anything is stored or spent, and the usage they count.

Refusals are problem+json naming the limit (403 for what waiting cannot fix, 429
for clips in flight, 402 for a budget) and, for a budget, when it resets. A
budget is reserved with one guarded write, so concurrent creates cannot
overshoot it; a clip's end settles its estimate against what it cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import AutoReconnect
from structlog.testing import capture_logs

from reelflow_api.deps import AppState
from reelflow_api.outliving import OutlivingWork
from reelflow_common.accounting import CostBook, CostStats, TenantLimits
from reelflow_common.accounting.ledger import (
    RESERVATION_LANDS_S,
    SETTLED_KEPT,
    LedgerStore,
    Settlement,
)
from reelflow_common.admin.cli import AdminSettings, main
from reelflow_common.domain import ClipStatus
from reelflow_common.store import (
    Project,
    ProjectStore,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
)
from reelflow_common.store.documents import pack_requests, pack_result, unpack_requests
from reelflow_common.store.inflight import SETTLE_WINDOW_S, TenantClips
from reelflow_common.store.transitions import charges, lateresults, retries
from reelflow_common.store.unreserved import UnreservedSpend
from reelflow_common.topology import CHECK_CLIP
from reelflow_common.tracking.settlesweep import SettleSweep
from tests.integration.api_helpers import (
    Api,
    assert_problem,
    fail,
    finish,
    isolated_api,
    move_clip,
    stored,
)
from tests.waiting import DEADLINE_S, eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

#: every scene lasts one second at the fallback price: a clip is estimated at $0.25
PRICE_PER_S = 0.25
#: a model reelflow knows no rules of (one-second scenes are not refused) and no price of
MODEL = "acme:video@1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(amqp_url: str, mongo_url: str) -> AsyncIterator[Api]:
    async with isolated_api(
        amqp_url,
        mongo_url,
        auth_cache_ttl_s=0,
        cost_fallback_usd_per_s=PRICE_PER_S,
        cost_estimate_ttl_s=0,
        default_duration=1,
        default_model=MODEL,
    ) as api:
        yield api


async def limited(api: Api, **limits: object) -> tuple[str, dict[str, str]]:
    """A new tenant with these limits: its id and headers authenticating as it."""
    tenant_id = await api.keys.create_tenant("limited")
    await api.keys.set_limits(tenant_id, TenantLimits.model_validate(limits))
    key = await api.keys.issue_key(tenant_id)
    return tenant_id, {"Authorization": f"Bearer {key}"}


def scenes(n: int) -> dict[str, object]:
    return {"scenes": [{"prompt": f"scene {i}"} for i in range(n)]}


def next_utc_midnight() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


async def test_more_scenes_than_allowed_is_403_naming_the_limit(api: Api) -> None:
    _, auth = await limited(api, max_scenes_per_project=2)

    problem = assert_problem(await api.create(auth, scenes(3)), 403)

    assert problem["limit"] == "max_scenes_per_project"
    assert problem["limit_value"] == 2
    assert (await api.create(auth, scenes(2))).status_code == 202


async def test_a_model_not_allowed_is_403_naming_the_allowed_ones(api: Api) -> None:
    _, auth = await limited(api, allowed_models=["acme:video@2"])

    problem = assert_problem(await api.create(auth, scenes(1) | {"model": MODEL}), 403)

    assert problem["limit"] == "allowed_models"
    assert problem["limit_value"] == ["acme:video@2"]
    assert (await api.create(auth, scenes(1) | {"model": "acme:video@2"})).status_code == 202


async def test_too_many_clips_in_flight_is_429_until_clips_end(api: Api) -> None:
    _, auth = await limited(api, max_clips_in_flight=3)
    first = await api.create(auth, scenes(2))
    assert first.status_code == 202

    response = await api.create(auth, scenes(2))

    problem = assert_problem(response, 429)
    assert problem["limit"] == "max_clips_in_flight"
    assert int(response.headers["Retry-After"]) > 0
    # One clip ends: there is room for one more, not two.
    project_id = first.json()["project_id"]
    await fail(api, project_id, first.json()["results"][0]["task_uuid"])
    assert (await api.create(auth, scenes(2))).status_code == 202
    assert_problem(await api.create(auth, scenes(1)), 429)


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        pytest.param({"max_clips_in_flight": 2}, "max_clips_in_flight", id="in-flight"),
        pytest.param({"daily_budget_usd": 0.5}, "daily_budget_usd", id="daily"),
        pytest.param({"monthly_budget_usd": 0.5}, "monthly_budget_usd", id="monthly"),
    ],
)
async def test_a_project_past_a_whole_limit_on_its_own_is_403_with_no_time_to_wait_for(
    api: Api, limits: dict[str, object], limit: str
) -> None:
    _, auth = await limited(api, **limits)

    response = await api.create(auth, scenes(3))  # 3 clips, $0.75: no wait makes room

    problem = assert_problem(response, 403)
    assert (problem["limit"], problem["limit_value"]) == (limit, next(iter(limits.values())))
    assert "Retry-After" not in response.headers
    assert "resets_at" not in problem
    assert "more than the tenant's" in problem["detail"]
    assert (await api.create(auth, scenes(2))).status_code == 202  # within it: taken


async def test_a_project_past_the_daily_budget_is_402_with_when_it_resets(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=1.0)
    assert (await api.create(auth, scenes(3))).status_code == 202  # $0.75 reserved

    response = await api.create(auth, scenes(2))  # $0.50 more: past $1.00

    problem = assert_problem(response, 402)
    assert problem["limit"] == "daily_budget_usd"
    assert problem["limit_value"] == 1.0
    resets_at = datetime.fromisoformat(problem["resets_at"].replace("Z", "+00:00"))
    assert resets_at == next_utc_midnight()
    assert 0 < int(response.headers["Retry-After"]) <= 86_400
    assert (await api.create(auth, scenes(1))).status_code == 202  # exactly $1.00
    ledger = await LedgerStore(api.db).read(tenant_id)
    assert ledger.open == 4


async def test_concurrent_creates_cannot_overshoot_a_budget(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=1.0, monthly_budget_usd=50.0)

    responses = await asyncio.gather(*(api.create(auth, scenes(1)) for _ in range(10)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202] * 4 + [402] * 6, statuses
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.committed_in(day) == pytest.approx(1.0)
    assert ledger.open == 4


async def test_a_clip_end_settles_its_estimate_against_its_cost(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(3))).json()
    project_id = created["project_id"]
    tasks = [result["task_uuid"] for result in created["results"]]

    cost_known = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    cost_unknown = TaskSucceeded(video_url="https://cdn.test/b.mp4", cost=None)
    await move_clip(api, project_id, tasks[0], cost_known)
    await move_clip(api, project_id, tasks[1], cost_unknown)
    await fail(api, project_id, tasks[2])
    # A duplicate of the first end (a redelivery) settles nothing twice.
    await api.projects.record(project_id, 0, tasks[0], cost_known)

    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    # $0.40 paid, $0.25 kept for the clip whose price is unknown, the failed clip's freed.
    assert ledger.committed_in(day) == pytest.approx(0.65)
    assert ledger.open == 0

    usage = (await api.client.get("/v1/usage", headers=auth)).json()
    assert usage["month"]["usd"] == pytest.approx(0.4)
    assert usage["month"]["known_cost_clips"] == 1
    assert usage["month"]["unknown_cost_clips"] == 1
    assert [day_usage["period"] for day_usage in usage["days"]] == [day]
    assert usage["clips_in_flight"] == 0
    assert usage["limits"]["daily_budget_usd"] == 10.0
    status = (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).json()
    assert status["cost"] == {"usd": 0.4, "known": 1, "unknown": 1}


async def test_clip_ends_at_once_settle_each_clips_reservation_once(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(4))).json()
    project_id = created["project_id"]
    tasks = [result["task_uuid"] for result in created["results"]]
    project = await stored(api, project_id)
    await asyncio.gather(
        *(
            api.projects.mark_processing(
                project_id, clip.scene_index, clip.task_uuid, token=clip.lease.token
            )
            for clip in project.clips
            if clip.lease is not None
        )
    )
    ends: list[TaskResult] = [
        TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4),
        TaskSucceeded(video_url="https://cdn.test/b.mp4", cost=None),
        TaskSucceeded(video_url="https://cdn.test/c.mp4", cost=0.1),
        TaskFailed(code="providerError", message="boom"),
    ]

    # The four ends at once, as one message of checks brings them, one of them twice (its
    # webhook beside it): written together (test_project_store shows ends at once merge),
    # each settles its own reservation, read back from the one merged update.
    changes = await asyncio.gather(
        *(api.projects.record(project_id, i, tasks[i], ends[i]) for i in (0, 1, 2, 3, 0))
    )

    assert [change.applied for change in changes].count(True) == 4
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    # $0.50 paid, $0.25 kept for the clip whose price is unknown, the failed clip's freed.
    assert ledger.committed_in(day) == pytest.approx(0.75)
    assert ledger.open == 0
    status = (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).json()
    assert status["cost"] == {"usd": pytest.approx(0.5), "known": 2, "unknown": 1}
    assert status["status"] == "partial"
    # The project recorded each settlement: told again after the ledger forgot, nothing moves.
    await others_fill_the_list(api, tenant_id)
    await asyncio.gather(*(api.projects.record(project_id, i, tasks[i], ends[i]) for i in range(4)))
    await ledger_is(api, tenant_id, open_clips=0, usd=0.75)


async def test_usage_sums_every_project_of_the_month_by_day(api: Api) -> None:
    tenant_id = await api.keys.create_tenant("plain")
    auth = {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"}
    costs = [0.1, 0.2, 0.3]
    for cost in costs:
        created = (await api.create(auth, scenes(1))).json()
        video = TaskSucceeded(video_url="https://cdn.test/v.mp4", cost=cost)
        await move_clip(api, created["project_id"], created["results"][0]["task_uuid"], video)

    usage = (await api.client.get("/v1/usage", headers=auth)).json()

    assert usage["month"]["usd"] == pytest.approx(0.6)
    assert usage["month"]["projects"] == 3
    assert usage["days"][0]["usd"] == pytest.approx(0.6)
    # No limits: no ledger, nothing committed.
    assert usage["clips_in_flight"] is None
    last_year = (await api.client.get("/v1/usage?month=2000-01", headers=auth)).json()
    assert last_year["month"]["usd"] == 0
    for month in ("2000-13", "0000-01", "1969-12", "9999-12"):
        assert_problem(await api.client.get(f"/v1/usage?month={month}", headers=auth), 422)
    assert (await api.client.get("/v1/usage?month=2999-12", headers=auth)).status_code == 200


async def test_usage_of_a_month_shows_what_is_committed_in_that_month_only(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=5.0)
    assert (await api.create(auth, scenes(2))).status_code == 202  # $0.50 reserved today
    # What the ledger committed in an earlier month (a project of last year's, say).
    await api.db["tenant_ledgers"].update_one(
        {"_id": tenant_id}, {"$set": {"committed.2000-01-15": 1.0, "committed.2000-01": 1.0}}
    )
    today = datetime.now(UTC)

    now = (await api.client.get("/v1/usage", headers=auth)).json()
    then = (await api.client.get("/v1/usage?month=2000-01", headers=auth)).json()

    day, month = today.strftime("%Y-%m-%d"), today.strftime("%Y-%m")
    assert now["committed_usd"] == {day: pytest.approx(0.5), month: pytest.approx(0.5)}
    assert then["committed_usd"] == {"2000-01-15": 1.0, "2000-01": 1.0}


async def test_a_retry_is_403_for_a_model_or_a_size_the_tenant_may_no_longer_use(
    api: Api,
) -> None:
    """A retry buys new tasks: the tenant's limits on what it may buy apply to it as to a create."""
    tenant_id, auth = await limited(api, allowed_models=[MODEL])
    created = (await api.create(auth, scenes(2) | {"model": MODEL})).json()
    project_id = created["project_id"]
    await fail(api, project_id, created["results"][0]["task_uuid"])
    retry = f"/v1/projects/{project_id}/retry"

    await api.keys.set_limits(tenant_id, TenantLimits(allowed_models=["acme:video@2"]))
    problem = assert_problem(await api.client.post(retry, headers=auth), 403)
    assert problem["limit"] == "allowed_models"
    await api.keys.set_limits(tenant_id, TenantLimits(max_scenes_per_project=1))
    problem = assert_problem(await api.client.post(retry, headers=auth), 403)
    assert problem["limit"] == "max_scenes_per_project"

    assert (await stored(api, project_id)).clips[0].status == "failed"
    await api.keys.set_limits(tenant_id, TenantLimits())
    assert (await api.client.post(retry, headers=auth)).status_code == 202
    assert (await stored(api, project_id)).clips[0].status == "queued"


async def test_a_reservation_from_a_stale_grant_keeps_the_budget_an_operator_lowered(
    api: Api,
) -> None:
    """The API reserves with the limits cached with the key; the submitter's budget gate reads
    the ledger's: a reservation made with the old ones must not write them back."""
    tenant_id, auth = await limited(api, daily_budget_usd=5.0)
    assert (await api.create(auth, scenes(1))).status_code == 202
    ledgers = LedgerStore(api.db)

    await api.keys.set_limits(tenant_id, TenantLimits(daily_budget_usd=1.0))
    stale = TenantLimits(daily_budget_usd=5.0)
    await ledgers.reserve(tenant_id, stale, clips=1, usd=0.25, now=api.projects.now())

    budget = await ledgers.budget(tenant_id)
    assert budget is not None
    assert budget.limits.daily_budget_usd == 1.0


async def test_limits_that_need_a_ledger_give_the_tenant_one_before_its_first_project(
    api: Api,
) -> None:
    """So the budget gate reads them, whatever limits the first reservation's grant held."""
    tenant_id, _ = await limited(api)
    ledgers = LedgerStore(api.db)
    await api.keys.set_limits(tenant_id, TenantLimits(max_scenes_per_project=3))
    assert await ledgers.budget(tenant_id) is None  # a limit on the request alone: no ledger

    await api.keys.set_limits(tenant_id, TenantLimits(daily_budget_usd=1.0))

    budget = await ledgers.budget(tenant_id)
    assert budget is not None
    assert budget.limits.daily_budget_usd == 1.0


async def test_retry_is_402_while_the_budget_is_spent_and_works_once_it_allows(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=0.5)
    created = (await api.create(auth, scenes(2))).json()  # $0.50 reserved
    project_id = created["project_id"]
    first, second = (result["task_uuid"] for result in created["results"])
    # The first clip cost more than estimated; the second failed (its $0.25 freed).
    await move_clip(api, project_id, first, TaskSucceeded(video_url="https://v/1.mp4", cost=0.4))
    await fail(api, project_id, second, code="budgetExceeded")

    refused = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    problem = assert_problem(refused, 402)
    assert problem["limit"] == "daily_budget_usd"
    assert (await stored(api, project_id)).clips[1].status == "failed"
    await api.keys.set_limits(tenant_id, TenantLimits(daily_budget_usd=1.0))
    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    assert retried.status_code == 202, retried.text
    clip = (await stored(api, project_id)).clips[1]
    assert clip.status == "queued"
    assert clip.charge is not None
    assert clip.charge.usd == pytest.approx(0.25)


async def test_estimates_come_from_the_prices_observed_per_model(api: Api) -> None:
    book = CostBook()
    hd = {"width": 1280, "height": 720}  # the api's default size
    book.observe("bytedance:2@1", 5, 0.5, **hd)  # $0.10 a second
    book.observe("bytedance:2@1", 10, 1.0, **hd)
    book.observe("bytedance:2@1", 4, None, **hd)  # no price: not an observation
    await CostStats(api.db, book).flush()
    _, auth = await limited(api, daily_budget_usd=1.0)
    body = {"model": "bytedance:2@1", "scenes": [{"prompt": "a cat", "duration": 4}] * 2}

    assert (await api.create(auth, body)).status_code == 202  # $0.80
    problem = assert_problem(await api.create(auth, body), 402)  # $0.80 more

    assert "$0.80" in problem["detail"]
    assert "$0.20 left" in problem["detail"]


async def test_a_size_whose_cost_was_never_seen_is_reserved_at_the_fallback(api: Api) -> None:
    """Runware's price per second depends on the size (Veo at 4K costs three times 720p):
    a model seen at 720p only reserves its 4K clips at the fallback, not at its 720p price
    (where a $1 budget let $2+ of 4K clips run before their costs came in); once a size's
    cost is seen, its scenes are reserved at it, each scene at its own size's price."""
    veo = "google:3@2"  # its sizes are left to Runware: 4K passes the api's checks
    hd = {"width": 1280, "height": 720}
    uhd = {"width": 3840, "height": 2160}
    book = CostBook()
    book.observe(veo, 8, 0.4, **hd)  # $0.05 a second (under the fallback: the dearest seen)
    await CostStats(api.db, book).flush()
    _, auth = await limited(api, daily_budget_usd=1.0)

    in_4k = {"model": veo, "scenes": [{"prompt": "a cat", "duration": 8, **uhd}]}
    problem = assert_problem(await api.create(auth, in_4k), 403)

    # 8 s at the fallback's $0.25, not $0.40 at the 720p price: more than the whole budget.
    assert "about $2.00, more than the tenant's whole daily budget" in problem["detail"]
    assert problem["limit"] == "daily_budget_usd"
    book.observe(veo, 8, 1.2, **uhd)  # 4K seen: $0.15 a second
    await CostStats(api.db, book).flush()
    mixed = {
        "model": veo,
        "scenes": [
            {"prompt": "a cat", "duration": 4, **hd},
            {"prompt": "a dog", "duration": 4, **uhd},
        ],
    }
    created = await api.create(auth, mixed)
    assert created.status_code == 202, created.text  # $0.20 + $0.60
    clips = (await stored(api, created.json()["project_id"])).clips
    assert [clip.charge.usd if clip.charge else None for clip in clips] == [
        pytest.approx(0.2),
        pytest.approx(0.6),
    ]


async def test_a_replay_with_the_same_idempotency_key_is_not_counted_again(api: Api) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=2)
    key = {"Idempotency-Key": "once"}
    first = await api.create(auth, scenes(2), headers=key)
    assert first.status_code == 202

    again = await api.create(auth, scenes(2), headers=key)  # the tenant is at its limit

    assert again.status_code == 202, again.text
    assert again.json()["project_id"] == first.json()["project_id"]
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert (await LedgerStore(api.db).read(tenant_id)).open == 2


@pytest.mark.parametrize("ledger", [{}, {"daily_budget_usd": 10.0}], ids=["no ledger", "budget"])
@pytest.mark.parametrize(
    ("now", "limit"),
    [
        ({"max_scenes_per_project": 1}, "max_scenes_per_project"),
        ({"allowed_models": ["acme:video@2"]}, "allowed_models"),
    ],
    ids=["scenes", "model"],
)
async def test_a_replay_answers_with_its_project_after_the_limits_changed(
    api: Api, ledger: dict[str, Any], now: dict[str, Any], limit: str
) -> None:
    """A client retrying after a timeout is not told its project was refused (403) while it
    runs and is billed: the same key and body return the first project, whatever the limits
    say now, for a tenant with a ledger or without."""
    tenant_id, auth = await limited(api, **ledger)
    key = {"Idempotency-Key": "rp-1"}
    first = await api.create(auth, scenes(2), headers=key)
    assert first.status_code == 202, first.text
    await api.keys.set_limits(tenant_id, TenantLimits.model_validate(ledger | now))

    again = await api.create(auth, scenes(2), headers=key)

    assert again.status_code == 202, again.text
    assert again.json()["project_id"] == first.json()["project_id"]
    assert again.headers["idempotency-replayed"] == "true"
    # A new request is judged on the limits as they are now.
    fresh = await api.create(auth, scenes(2), headers={"Idempotency-Key": "rp-2"})
    assert assert_problem(fresh, 403)["limit"] == limit
    listed = await api.client.get("/v1/projects", headers=auth)
    assert [p["project_id"] for p in listed.json()["items"]] == [first.json()["project_id"]]


@pytest.mark.parametrize(
    "limits", [{"max_clips_in_flight": 2}, {"daily_budget_usd": 0.5}], ids=["in flight", "budget"]
)
async def test_a_twin_of_a_create_in_progress_is_told_so_never_refused_for_its_room(
    api: Api, monkeypatch: pytest.MonkeyPatch, limits: dict[str, Any]
) -> None:
    """Two POSTs with one Idempotency-Key at once (a client's retry after a timeout): the
    first holds the room its project needs; the second is its replay, never a 429 or 402 for
    that room. While the first is not stored, the second is told to come back (409)."""
    tenant_id, auth = await limited(api, **limits)
    key = {"Idempotency-Key": "twins"}
    inserts = Inserts(api, monkeypatch, held=True)
    first = asyncio.create_task(api.create(auth, scenes(2), headers=key))
    await asyncio.wait_for(inserts.sent.wait(), DEADLINE_S)  # reserved, its insert on its way

    try:
        twin = await api.create(auth, scenes(2), headers=key)
    finally:
        inserts.released.set()
    created = await asyncio.wait_for(first, DEADLINE_S)

    problem = assert_problem(twin, 409)
    assert problem["title"] == "Request In Progress"
    assert int(twin.headers["Retry-After"]) >= 1
    assert created.status_code == 202, created.text
    again = await api.create(auth, scenes(2), headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["project_id"] == created.json()["project_id"]
    assert (await LedgerStore(api.db).read(tenant_id)).open == 2
    # Another key is no twin: refused for the room the project holds, as ever.
    other = await api.create(auth, scenes(2), headers={"Idempotency-Key": "another"})
    assert assert_problem(other, 429 if "max_clips_in_flight" in limits else 402)


async def test_a_retry_of_a_create_that_failed_is_judged_on_the_room_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create with an Idempotency-Key failed (503) after reserving, and gave its room back;
    another project took the room. The client's retry with the key is refused for the room,
    not told for a minute that a request with its key holds it (409)."""
    tenant_id, auth = await limited(api, max_clips_in_flight=2)
    key = {"Idempotency-Key": "failed once"}
    inserts = Inserts(api, monkeypatch, lost=AutoReconnect("connection lost before the insert"))
    assert_problem(await api.create(auth, scenes(2), headers=key), 503)
    inserts.lost = None
    assert (await api.create(auth, scenes(2))).status_code == 202  # the room, taken

    retried = await api.create(auth, scenes(2), headers=key)

    assert_problem(retried, 429)
    assert (await LedgerStore(api.db).read(tenant_id)).open == 2


async def test_a_twin_refused_for_room_after_the_first_was_stored_replays_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin read no project for its key just before the first's insert landed, so it
    reserved, and was refused for the room the first holds: it answers with the first's
    project, as a replay."""
    _, auth = await limited(api, max_clips_in_flight=2)
    key = {"Idempotency-Key": "twins, one stored"}
    created = await api.create(auth, scenes(2), headers=key)
    assert created.status_code == 202, created.text
    state = api_state(api)
    replay_of = state.projects.replay_of
    reads: list[str] = []

    async def read_before_the_insert(new: Any) -> Any:
        reads.append(new.idempotency_key)
        return None if len(reads) == 1 else await replay_of(new)

    monkeypatch.setattr(state.projects, "replay_of", read_before_the_insert)

    twin = await api.create(auth, scenes(2), headers=key)

    assert twin.status_code == 202, twin.text
    assert twin.json()["project_id"] == created.json()["project_id"]
    assert twin.headers["idempotency-replayed"] == "true"


async def test_a_replaced_tasks_late_video_bills_both_tasks_once_each(api: Api) -> None:
    """Runware bills every task that ran: the one given up on and the retry that replaced it.

    The retry's reservation stays in flight until its own task ends, and no duplicate of
    the late video (a webhook and a poll, a redelivery) settles anything a second time.
    """
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=5)
    project_id, first, second = await failed_then_retried(api, auth)
    day = datetime.now(UTC).strftime("%Y-%m-%d")

    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    await api.projects.record(project_id, 0, first, late)
    await api.projects.record(project_id, 0, first, late)  # the same news, twice

    ledger = await LedgerStore(api.db).read(tenant_id)
    # The late video is paid; the second task still runs at Runware, its estimate held.
    assert ledger.open == 1
    assert ledger.committed_in(day) == pytest.approx(0.65)

    ended = TaskSucceeded(video_url="https://cdn.test/second.mp4", cost=0.3)
    await api.projects.record(project_id, 0, second, ended)
    await api.projects.record(project_id, 0, second, ended)
    await api.projects.record(project_id, 0, first, late)

    ledger = await LedgerStore(api.db).read(tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.7)
    status = (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).json()
    assert status["clips"] == {first: "https://cdn.test/late.mp4"}
    assert status["cost"] == {"usd": pytest.approx(0.7), "known": 2, "unknown": 0}
    (result,) = status["results"]
    assert (result["task_uuid"], result["cost"]) == (first, 0.4)
    assert [(a["task_uuid"], a["status"], a["cost"]) for a in result["attempts"]] == [
        (second, "success", 0.3)
    ]
    usage = (await api.client.get("/v1/usage", headers=auth)).json()
    assert usage["month"]["usd"] == pytest.approx(0.7)
    assert usage["clips_in_flight"] == 0


async def test_a_late_video_of_a_timed_out_clip_is_billed_once_and_a_retry_takes_it_free(
    api: Api,
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
    project_id, task = created["project_id"], created["results"][0]["task_uuid"]
    await fail(api, project_id, task, code="timedOut")  # our ceiling: its $0.25 freed
    await api.drain()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)

    await api.projects.record(project_id, 0, task, late)
    await api.projects.record(project_id, 0, task, late)  # the same news again
    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    await api.projects.record(project_id, 0, task, late)  # and after the retry took it

    assert retried.status_code == 202, retried.text
    status = retried.json()
    assert (status["status"], status["clips"]) == ("completed", {task: "https://cdn.test/late.mp4"})
    assert status["cost"] == {"usd": 0.4, "known": 1, "unknown": 0}
    assert (await api.drain(), await api.drain(CHECK_CLIP)) == ([], [])  # nothing bought
    ledger = await LedgerStore(api.db).read(tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.4)


async def test_a_late_video_runware_does_not_price_commits_its_estimate_not_nothing(
    api: Api,
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
    project_id, task = created["project_id"], created["results"][0]["task_uuid"]
    await fail(api, project_id, task, code="timedOut")  # our ceiling: its $0.25 freed
    day = datetime.now(UTC).strftime("%Y-%m-%d")

    # Runware bills the video but does not say how much: the budget counts the estimate.
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=None)
    await api.projects.record(project_id, 0, task, late)

    ledger = await LedgerStore(api.db).read(tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.25)


@pytest.mark.parametrize("held", [False, True], ids=["timed out", "cancelled at Runware"])
async def test_a_crash_between_a_late_videos_write_and_its_settlement_is_settled_on_redelivery(
    api: Api, held: bool
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
    project_id, task = created["project_id"], created["results"][0]["task_uuid"]
    if held:
        await at_runware(api, project_id)
        await cancelled(api, auth, project_id)  # its $0.25 held: Runware runs the task on
    else:
        await fail(api, project_id, task, code="timedOut")  # our ceiling: its $0.25 freed
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    clip = (await stored(api, project_id)).clips[0]
    write = lateresults.late_result(
        project_id, clip, task, late, now=datetime.now(UTC), correlation_id=None, log_size=64
    )
    assert write is not None
    # The poller wrote the video, then died before it settled the ledger.
    assert (await api.db["projects"].update_one(write.filter, write.update)).modified_count == 1
    await ledger_is(api, tenant_id, open_clips=int(held), usd=0.25 if held else 0.0)

    redelivered = await api.projects.record(project_id, 0, task, late)

    assert not redelivered.applied
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.4)


async def failed_then_retried(api: Api, auth: dict[str, str]) -> tuple[str, str, str]:
    """A one-scene project whose first task Runware lost and whose retry's task is processing:
    (project, first task, retry's task). The ledger: the retry's $0.25 in flight."""
    created = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
    project_id, first = created["project_id"], created["results"][0]["task_uuid"]
    await fail(api, project_id, first, code="taskFailedOrNotFound")  # its $0.25 freed
    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    assert retried.status_code == 202, retried.text  # $0.25 reserved for the new task
    clip = (await stored(api, project_id)).clips[0]
    assert clip.lease is not None
    await api.projects.mark_processing(project_id, 0, clip.task_uuid, token=clip.lease.token)
    return project_id, first, clip.task_uuid


async def test_a_late_result_read_before_a_retry_lands_neither_stale_nor_twice(api: Api) -> None:
    """A poller read the failed clip and built "record the earlier video in its attempt";
    a retry came first. Its write lands on nothing; the video is then taken (nothing
    bought is lost), counted and billed once, however often it comes again."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id, first, second = await failed_then_retried(api, auth)
    await fail_processing(api, project_id, second)  # attempts: {first: failed}
    read = (await stored(api, project_id)).clips[0]
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    stale = lateresults.late_result(
        project_id, read, first, late, now=datetime.now(UTC), correlation_id=None, log_size=64
    )
    assert stale is not None
    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    assert retried.status_code == 202, retried.text  # a third task, $0.25 in flight

    landed = await api.db["projects"].update_one(stale.filter, stale.update)
    await api.projects.record(project_id, 0, first, late)
    await api.projects.record(project_id, 0, first, late)  # the same news again

    assert landed.matched_count == 0
    after = await stored(api, project_id)
    assert (after.clips[0].task_uuid, after.clips[0].status) == (first, "success")
    assert after.cost.usd == pytest.approx(0.4)
    assert after.cost.known == 1
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.open == 1  # the third task runs at Runware all the same
    assert ledger.committed_in(day) == pytest.approx(0.65)


async def fail_processing(api: Api, project_id: str, task_uuid: str) -> None:
    failed = TaskFailed(code="providerError", message="boom")
    assert (await api.projects.record(project_id, 0, task_uuid, failed)).applied


async def test_a_clip_taken_by_the_code_before_is_settled_with_that_codes_keys(api: Api) -> None:
    """Written before attempts held charges: the clip took the earlier task's video and kept
    the replaced task's charge, which that code settled as ``<charge>:<video's task>:late``."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id, first, second = await failed_then_retried(api, auth)
    read = (await stored(api, project_id)).clips[0]
    assert read.charge is not None
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    old = {
        "task_uuid": first,
        "status": "success",
        "result": pack_result(completed_at=datetime.now(UTC), video_url=late.video_url, cost=0.4),
        "charge": read.charge.model_dump(),
        "attempts": {
            second: {"status": "processing", "queued_at": read.queued_at, "submitted_at": None}
        },
    }
    await api.db["projects"].update_one(
        {"_id": project_id},
        {
            "$set": {f"clips.0.{name}": value for name, value in old.items()}
            | {"counts.pending": 0, "counts.completed": 1, "status": "completed"},
            "$unset": {f"clips.0.{name}": "" for name in ("lease", "queued_at", "submitted_at")},
        },
    )
    old_key = Settlement(key=f"{first}:late", ended=True, billed=True, cost=0.4)
    ledgers = LedgerStore(api.db)
    assert await ledgers.settle(tenant_id, read.charge, old_key)  # what that code settled

    await api.projects.record(project_id, 0, first, late)  # a duplicate of the video
    ended = TaskSucceeded(video_url="https://cdn.test/second.mp4", cost=0.3)
    await api.projects.record(project_id, 0, second, ended)  # the replaced task's end
    await api.projects.record(project_id, 0, second, ended)

    ledger = await ledgers.read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.7)
    after = await stored(api, project_id)
    assert after.clips[0].attempts[second].status == "success"


async def test_an_earlier_attempt_without_a_charge_bills_its_video_on_the_clips(api: Api) -> None:
    """Written before attempts held charges: its video, taken by the open clip, is billed
    on the retry's charge (as that code did), which stays in flight until its task ends."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id, first, second = await failed_then_retried(api, auth)
    await api.db["projects"].update_one(
        {"_id": project_id}, {"$unset": {f"clips.0.attempts.{first}.charge": ""}}
    )
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.4)
    ledgers = LedgerStore(api.db)
    day = datetime.now(UTC).strftime("%Y-%m-%d")

    await api.projects.record(project_id, 0, first, late)
    await api.projects.record(project_id, 0, first, late)

    ledger = await ledgers.read(tenant_id)
    assert ledger.open == 1
    assert ledger.committed_in(day) == pytest.approx(0.65)
    ended = TaskSucceeded(video_url="https://cdn.test/second.mp4", cost=0.3)
    await api.projects.record(project_id, 0, second, ended)
    await api.projects.record(project_id, 0, first, late)
    ledger = await ledgers.read(tenant_id)
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.7)
    after = await stored(api, project_id)
    assert after.cost.usd == pytest.approx(0.7)
    assert after.cost.known == 2


# --- a cancel does not stop Runware: a task still running keeps its reservation ---------


async def at_runware(api: Api, project_id: str, scenes: int | None = None) -> list[str]:
    """Runware took the project's first ``scenes`` clips (all by default), as the submitter
    records it: every clip's task, in scene order."""
    project = await stored(api, project_id)
    for clip in project.clips[:scenes]:
        assert clip.lease is not None
        token = clip.lease.token
        taken = await api.projects.mark_processing(
            project_id, clip.scene_index, clip.task_uuid, token=token
        )
        assert taken.applied
    return [clip.task_uuid for clip in project.clips]


async def cancelled(api: Api, auth: dict[str, str], project_id: str) -> None:
    response = await api.client.post(f"/v1/projects/{project_id}/cancel", headers=auth)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"


async def clips_in_flight(api: Api, auth: dict[str, str]) -> int:
    found: int = (await api.client.get("/v1/usage", headers=auth)).json()["clips_in_flight"]
    return found


async def submitted_after_the_cancel(api: Api, queued: Project) -> list[str]:
    """Runware took the project's clips, queued as ``queued`` was read, after their cancel all
    the same (a first submit within ``submit_read_after_s`` of the POST reads nothing; or a
    submit was on its way): each chain's → processing write, as the submitter makes it once
    Runware answered. The clips' tasks, in scene order."""
    for clip in queued.clips:
        assert clip.lease is not None
        await api.projects.mark_processing(
            queued.id, clip.scene_index, clip.task_uuid, token=clip.lease.token
        )
    return [clip.task_uuid for clip in queued.clips]


async def attempts_listed(api: Api, auth: dict[str, str], project_id: str) -> list[Any]:
    status = (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).json()
    assert [result["status"] for result in status["results"]] == ["cancelled"] * len(
        status["results"]
    )
    return [result.get("attempts") for result in status["results"]]


@pytest.mark.parametrize("when", ["processing", "queued, submitted after the cancel"])
async def test_cancelled_clips_stay_in_flight_until_their_tasks_end(api: Api, when: str) -> None:
    """Runware runs the tasks of clips cancelled while processing; and of clips cancelled
    while queued whose submits reach it all the same (a first submit within 10 s of the POST
    reads nothing, or a submit was on its way)."""
    _, auth = await limited(api, max_clips_in_flight=2, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(2))).json()["project_id"]
    queued = await stored(api, project_id)
    tasks = await at_runware(api, project_id) if when == "processing" else []

    await cancelled(api, auth, project_id)

    # The tenant is at its limit still (the queued clips' chains may send them yet).
    assert_problem(await api.create(auth, scenes(1)), 429)
    if not tasks:
        tasks = await submitted_after_the_cancel(api, queued)
        # Recorded in the tasks' attempts, followed from there: the clips stay cancelled.
        after = await stored(api, project_id)
        assert [c.attempts[c.task_uuid].status for c in after.clips] == ["processing"] * 2
    problem = assert_problem(await api.create(auth, scenes(1)), 429)
    assert problem["limit"] == "max_clips_in_flight"
    assert await clips_in_flight(api, auth) == 2
    # Clients see the clips cancelled as the cancel left them; no attempt without a video.
    assert await attempts_listed(api, auth, project_id) == [None, None]
    # The followed tasks end at Runware (a video, a failure): the tenant is let in again.
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    await api.projects.record(project_id, 0, tasks[0], video)
    assert (await api.create(auth, scenes(1))).status_code == 202
    assert_problem(await api.create(auth, scenes(1)), 429)
    await api.projects.record(project_id, 1, tasks[1], TaskFailed(code="boom", message="?"))
    assert (await api.create(auth, scenes(1))).status_code == 202
    listed = await attempts_listed(api, auth, project_id)
    assert [(a["task_uuid"], a["status"], a["cost"]) for a in listed[0]] == [
        (tasks[0], "success", 0.4)
    ]
    assert listed[1] is None


async def test_a_cancelled_tasks_video_is_billed_once_and_a_failure_frees_its_estimate(
    api: Api,
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(3))).json()["project_id"]  # $0.75 reserved
    tasks = await at_runware(api, project_id)
    await cancelled(api, auth, project_id)
    await ledger_is(api, tenant_id, open_clips=3, usd=0.75)
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    ceiling = TaskFailed(code=retries.TIMED_OUT, message="Runware had not finished it.")

    # Each end as its follow records it, and again (a webhook and a poll, a redelivery).
    for _ in range(2):
        await api.projects.record(project_id, 0, tasks[0], video)
        await api.projects.record(project_id, 1, tasks[1], TaskFailed(code="boom", message="?"))
        await api.projects.record(project_id, 2, tasks[2], ceiling)

    # The video's cost replaces its estimate; the failed and the timed-out tasks' are freed.
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)
    # Runware's video after our ceiling: billed on its own, once (its estimate freed already).
    late = TaskSucceeded(video_url="https://cdn.test/c.mp4", cost=0.3)
    await api.projects.record(project_id, 2, tasks[2], late)
    await api.projects.record(project_id, 2, tasks[2], late)
    await ledger_is(api, tenant_id, open_clips=0, usd=0.7)
    status = (await api.client.get(f"/v1/projects/{project_id}", headers=auth)).json()
    assert [result["status"] for result in status["results"]] == ["cancelled"] * 3
    assert status["cost"] == {"usd": pytest.approx(0.7), "known": 2, "unknown": 0}
    assert await clips_in_flight(api, auth) == 0


async def test_create_cancel_cycles_cannot_spend_past_the_budget(api: Api) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=1.0)
    for _ in range(2):  # $0.50 each, cancelled once Runware has them
        project_id = (await api.create(auth, scenes(2))).json()["project_id"]
        await at_runware(api, project_id)
        await cancelled(api, auth, project_id)

    problem = assert_problem(await api.create(auth, scenes(1)), 402)

    assert problem["limit"] == "daily_budget_usd"
    await ledger_is(api, tenant_id, open_clips=4, usd=1.0)


async def test_create_cancel_cycles_within_the_no_read_window_cannot_spend_past_the_budget(
    api: Api,
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=1.0)
    projects: list[tuple[str, list[str]]] = []
    for _ in range(2):  # $0.50 each, cancelled at once; Runware takes the tasks all the same
        project_id = (await api.create(auth, scenes(2))).json()["project_id"]
        queued = await stored(api, project_id)
        await cancelled(api, auth, project_id)
        projects.append((project_id, await submitted_after_the_cancel(api, queued)))

    problem = assert_problem(await api.create(auth, scenes(1)), 402)

    assert problem["limit"] == "daily_budget_usd"
    await ledger_is(api, tenant_id, open_clips=4, usd=1.0)
    # Each end settles once, however often it is told: a video bills its cost in place of
    # its estimate, a failure frees it.
    project_id, tasks = projects[0]
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    for _ in range(2):
        await api.projects.record(project_id, 0, tasks[0], video)
        await api.projects.record(project_id, 1, tasks[1], TaskFailed(code="boom", message="?"))
    await ledger_is(api, tenant_id, open_clips=2, usd=0.9)
    assert_problem(await api.create(auth, scenes(1)), 402)  # the other project's still run
    project_id, tasks = projects[1]
    for scene, task_uuid in enumerate(tasks):
        await api.projects.record(project_id, scene, task_uuid, TaskFailed(code="x", message="?"))
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)
    assert (await api.create(auth, scenes(2))).status_code == 202  # $0.50 of room again


async def test_a_queued_clip_cancelled_then_never_submitted_is_freed_by_its_chain_once(
    api: Api,
) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=2, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(2))).json()["project_id"]
    tasks = await at_runware(api, project_id, scenes=1)  # the second is still queued
    queued = (await stored(api, project_id)).clips[1]
    assert queued.lease is not None

    await cancelled(api, auth, project_id)

    # Both held: Runware runs the first; the second's chain may send it yet.
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)
    assert_problem(await api.create(auth, scenes(1)), 429)
    # Its chain reads the cancel before its submit (or Runware does not have it past the
    # grace): it frees the charge, once, however often that word comes.
    given_up = {"code": "clipGivenUp", "message": "cancelled before Runware had it"}
    for _ in range(2):
        await api.projects.never_submitted(
            project_id, 1, queued.task_uuid, given_up, token=queued.lease.token
        )
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)
    assert (await api.create(auth, scenes(1))).status_code == 202
    assert_problem(await api.create(auth, scenes(1)), 429)
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    await api.projects.record(project_id, 0, tasks[0], video)
    await ledger_is(api, tenant_id, open_clips=1, usd=0.65)
    listed = await attempts_listed(api, auth, project_id)
    assert [(a["task_uuid"], a["status"]) for a in listed[0]] == [(tasks[0], "success")]
    assert listed[1] is None  # its task ended without a video: nothing to list


class PlayedWrite:
    """A write as the test plays it: ``held`` until it lets it go, ``landed`` (when set)
    raised after the write was applied, ``lost`` raised instead of sending it."""

    def __init__(
        self,
        *,
        held: bool = False,
        landed: BaseException | None = None,
        lost: BaseException | None = None,
    ) -> None:
        self.sent = asyncio.Event()
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self.landed = landed
        self.lost = lost

    async def play(self, write: Callable[[], Awaitable[Any]]) -> Any:
        self.sent.set()
        await self.released.wait()
        if self.lost is not None:
            raise self.lost
        done = await write()
        if self.landed is not None:
            raise self.landed
        return done


class Inserts(PlayedWrite):
    """The API's inserts of new projects, played (:class:`PlayedWrite`)."""

    def __init__(self, api: Api, monkeypatch: pytest.MonkeyPatch, **play: Any) -> None:
        super().__init__(**play)
        collection = api_state(api).projects._projects
        insert_many = collection.insert_many

        async def played(docs: list[dict[str, Any]], **options: Any) -> Any:
            return await self.play(lambda: insert_many(docs, **options))

        monkeypatch.setattr(collection, "insert_many", played)


async def tenants_project(api: Api, tenant_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await api.db["projects"].find_one({"tenant_id": tenant_id})
    return found


async def end_every_clip(api: Api, project_id: str, costs: list[float]) -> None:
    project = await stored(api, project_id)
    for clip, cost in zip(project.clips, costs, strict=True):
        video = TaskSucceeded(video_url=f"https://cdn.test/{clip.task_uuid}.mp4", cost=cost)
        await move_clip(api, project_id, clip.task_uuid, video)


async def test_a_create_cancelled_while_its_insert_is_out_keeps_the_projects_reservation(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client went (or the API shut down) while the shared insert was out: the insert
    runs on, and the project it stored holds its clips' reservation until they end."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=10)
    inserts = Inserts(api, monkeypatch, held=True)
    request = asyncio.create_task(api.create(auth, scenes(2)))  # $0.50 reserved
    await asyncio.wait_for(inserts.sent.wait(), DEADLINE_S)

    await cancelled_then_let_go(api, request, inserts.released)

    project = await tenants_project(api, tenant_id)
    assert project is not None
    # ... and its clips were sent on, not left for the reconciler once their leases ran out.
    submits = [m.body for m in await api.drain() if m.body["project_id"] == project["_id"]]
    assert sorted(m["scene_index"] for m in submits) == [0, 1]
    await holds_until_its_clips_end(api, tenant_id, project["_id"])


async def holds_until_its_clips_end(api: Api, tenant_id: str, project_id: str) -> None:
    """The project's two clips hold their $0.50 reservation; once they end at $0.40 and
    $0.30, the ledger counts exactly that."""
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)
    await end_every_clip(api, project_id, [0.4, 0.3])
    await ledger_is(api, tenant_id, open_clips=0, usd=0.7)


async def test_a_create_cancelled_whose_insert_then_failed_gives_the_reservation_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision outlives the request: nothing was stored, so nothing stays reserved."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=10)
    inserts = Inserts(api, monkeypatch, held=True, lost=AutoReconnect("connection lost"))
    request = asyncio.create_task(api.create(auth, scenes(2)))  # $0.50 reserved
    await asyncio.wait_for(inserts.sent.wait(), DEADLINE_S)

    with capture_logs() as lines:
        await cancelled_then_let_go(api, request, inserts.released)

    await ledger_is(api, tenant_id, open_clips=0, usd=0.0)
    assert await tenants_project(api, tenant_id) is None
    # Nobody is left to answer with the error: it is logged.
    failed = [line for line in lines if line["event"] == "work_failed_after_its_request_went"]
    assert len(failed) == 1
    assert "connection lost" in failed[0]["error"]


async def cancelled_then_let_go(api: Api, request: asyncio.Task[Any], held: asyncio.Event) -> None:
    """Cancel ``request`` while its write is held (the client went), let the write go on,
    and wait until the work the request started has ended."""
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    held.set()
    await eventually(lambda: outliving(api).running == 0, "the request's work ran to its end")


def api_state(api: Api) -> AppState:
    state: AppState = api.app.state.reelflow
    return state


def outliving(api: Api) -> OutlivingWork:
    return api_state(api).outliving


async def test_a_create_whose_insert_landed_before_its_error_keeps_the_reservation(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    Inserts(api, monkeypatch, landed=AutoReconnect("connection lost before the reply"))

    response = await api.create(auth, scenes(2))  # $0.50 reserved

    assert_problem(response, 503)
    project = await tenants_project(api, tenant_id)
    assert project is not None
    await holds_until_its_clips_end(api, tenant_id, project["_id"])


async def test_a_create_whose_insert_never_landed_gives_the_reservation_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    Inserts(api, monkeypatch, lost=AutoReconnect("connection lost before the insert was sent"))

    response = await api.create(auth, scenes(2))

    assert_problem(response, 503)
    assert await tenants_project(api, tenant_id) is None
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.open == 0
    assert ledger.committed_in(day) == pytest.approx(0.0)


async def test_a_create_of_unknown_outcome_keeps_the_reservation_when_the_project_cannot_be_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tenant's room is understated, never overstated: the estimate stays committed, and a
    warning says so."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    Inserts(api, monkeypatch, lost=AutoReconnect("connection lost"))
    state = api_state(api)

    async def unreadable(*_args: Any, **_kwargs: Any) -> None:
        raise AutoReconnect("still gone")

    monkeypatch.setattr(state.projects, "get", unreadable)

    with capture_logs() as lines:
        response = await api.create(auth, scenes(2))

    assert_problem(response, 503)
    ledger = await LedgerStore(api.db).read(tenant_id)
    assert ledger.open == 2
    assert ledger.committed_in(datetime.now(UTC).strftime("%Y-%m-%d")) == pytest.approx(0.5)
    assert [line["tenant_id"] for line in lines if line["event"] == "reservation_not_released"] == [
        tenant_id
    ]


class ClipWrites(PlayedWrite):
    """A retry's guarded writes of one scene's clip (the API's ``find_one_and_update``),
    played (:class:`PlayedWrite`); every other write goes through."""

    def __init__(
        self, api: Api, monkeypatch: pytest.MonkeyPatch, scene_index: int, **play: Any
    ) -> None:
        super().__init__(**play)
        collection = api_state(api).projects._projects
        find_one_and_update = collection.find_one_and_update
        guarded = f"clips.{scene_index}.status"

        async def played(query: dict[str, Any], update: Any, **options: Any) -> Any:
            if query.get(guarded) != "failed":
                return await find_one_and_update(query, update, **options)
            return await self.play(lambda: find_one_and_update(query, update, **options))

        monkeypatch.setattr(collection, "find_one_and_update", played)


async def three_failed_clips(api: Api, auth: dict[str, str]) -> str:
    """A three-scene project whose clips all failed (their reservations freed): its id."""
    created = (await api.create(auth, scenes(3))).json()  # $0.75 reserved
    project_id: str = created["project_id"]
    for result in created["results"]:
        await fail(api, project_id, result["task_uuid"])
    return project_id


async def ledger_is(api: Api, tenant_id: str, *, open_clips: int, usd: float) -> None:
    ledger = await LedgerStore(api.db).read(tenant_id)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert ledger.open == open_clips
    assert ledger.committed_in(day) == pytest.approx(usd)


async def retried_clips(api: Api, project_id: str) -> list[int]:
    project = await stored(api, project_id)
    return [clip.scene_index for clip in project.clips if clip.status == "queued"]


async def end_retried_clips(api: Api, project_id: str, costs: dict[int, float]) -> None:
    project = await stored(api, project_id)
    for scene_index, cost in costs.items():
        task_uuid = project.clips[scene_index].task_uuid
        video = TaskSucceeded(video_url=f"https://cdn.test/{task_uuid}.mp4", cost=cost)
        await move_clip(api, project_id, task_uuid, video)


async def test_a_retry_whose_clip_write_failed_gives_back_the_charges_no_clip_holds(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first clip holds its charge; the second's write never landed (a read says so) and
    the third was never tried: theirs are given back, so the clips in flight are not held
    for ever."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=3)
    project_id = await three_failed_clips(api, auth)
    ClipWrites(api, monkeypatch, 1, lost=AutoReconnect("connection lost"))

    response = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    assert_problem(response, 503)  # $0.75 reserved, three clips
    assert await retried_clips(api, project_id) == [0]
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)
    await end_retried_clips(api, project_id, {0: 0.4})
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)
    monkeypatch.undo()
    assert (await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)).is_success


async def test_a_retry_whose_clip_write_landed_before_its_error_keeps_that_clips_charge(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=3)
    project_id = await three_failed_clips(api, auth)
    ClipWrites(api, monkeypatch, 1, landed=AutoReconnect("connection lost before the reply"))

    response = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    assert_problem(response, 503)
    assert await retried_clips(api, project_id) == [0, 1]
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)
    await end_retried_clips(api, project_id, {0: 0.4, 1: 0.3})
    await ledger_is(api, tenant_id, open_clips=0, usd=0.7)


async def test_a_retry_cancelled_while_a_clip_write_is_out_retries_every_clip(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client went (or the API shut down) while the second clip's write was out: the
    retry runs on, and each clip holds its charge until it ends."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=3)
    project_id = await three_failed_clips(api, auth)
    writes = ClipWrites(api, monkeypatch, 1, held=True)
    request = asyncio.create_task(api.client.post(f"/v1/projects/{project_id}/retry", headers=auth))
    await asyncio.wait_for(writes.sent.wait(), DEADLINE_S)

    await cancelled_then_let_go(api, request, writes.released)

    assert await all_retried(api, project_id)
    await ledger_is(api, tenant_id, open_clips=3, usd=0.75)
    await end_retried_clips(api, project_id, {0: 0.4, 1: 0.3, 2: 0.2})
    await ledger_is(api, tenant_id, open_clips=0, usd=0.9)


async def all_retried(api: Api, project_id: str) -> bool:
    return await retried_clips(api, project_id) == [0, 1, 2]


async def test_a_retry_cancelled_whose_clip_write_then_failed_gives_back_what_no_clip_holds(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=3)
    project_id = await three_failed_clips(api, auth)
    writes = ClipWrites(api, monkeypatch, 1, held=True, lost=AutoReconnect("connection lost"))
    request = asyncio.create_task(api.client.post(f"/v1/projects/{project_id}/retry", headers=auth))
    await asyncio.wait_for(writes.sent.wait(), DEADLINE_S)

    await cancelled_then_let_go(api, request, writes.released)

    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)
    assert await retried_clips(api, project_id) == [0]


async def test_a_retry_of_unknown_outcome_keeps_the_clips_charge_when_it_cannot_be_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tenant's room is understated, never overstated: the second clip's charge stays
    reserved, and a warning says so; the third clip's, never tried, is given back."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=3)
    project_id = await three_failed_clips(api, auth)
    ClipWrites(api, monkeypatch, 1, lost=AutoReconnect("connection lost"))
    state = api_state(api)

    async def unreadable(*_args: Any, **_kwargs: Any) -> None:
        raise AutoReconnect("still gone")

    monkeypatch.setattr(state.projects, "_read_clip", unreadable)

    with capture_logs() as lines:
        response = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    assert_problem(response, 503)
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)
    assert [line["tenant_id"] for line in lines if line["event"] == "reservation_not_released"] == [
        tenant_id
    ]


class HeldReservations:
    """The API's next ``held`` reservations on the ledger, each held until the test lets it go
    (``go``); ``came`` is set as each arrives. Later ones go through."""

    def __init__(self, api: Api, monkeypatch: pytest.MonkeyPatch, held: int) -> None:
        ledgers = api_state(api).projects.ledgers
        reserve = ledgers.reserve
        self.came = [asyncio.Event() for _ in range(held)]
        self.go = [asyncio.Event() for _ in range(held)]
        calls = itertools.count()

        async def played(*args: Any, **kwargs: Any) -> Any:
            call = next(calls)
            if call < held:
                self.came[call].set()
                await self.go[call].wait()
            return await reserve(*args, **kwargs)

        monkeypatch.setattr(ledgers, "reserve", played)

    async def arrived(self, call: int) -> None:
        await asyncio.wait_for(self.came[call].wait(), DEADLINE_S)


def retry_at_once(api: Api, project_id: str, auth: dict[str, str]) -> asyncio.Task[Any]:
    return asyncio.create_task(api.client.post(f"/v1/projects/{project_id}/retry", headers=auth))


async def test_a_retry_refused_for_room_the_retry_that_took_its_clips_holds_changes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent retries each reserve for the failed clips they read before they know whether
    they win them. One refused for the room the winner (or a loser, briefly) holds is not
    told the budget is spent (a 402 until midnight): the clips are retried, it did nothing."""
    tenant_id, auth = await limited(api, daily_budget_usd=0.75)  # room for one retry's $0.50
    project_id = await two_failed_clips(api, auth)
    held = HeldReservations(api, monkeypatch, held=1)
    late = retry_at_once(api, project_id, auth)  # read both clips failed; reserving
    await held.arrived(0)

    first = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    held.go[0].set()
    second = await asyncio.wait_for(late, DEADLINE_S)

    assert first.status_code == 202, first.text
    assert first.json()["clips_changed"] == 2
    assert second.status_code == 202, second.text
    assert second.json()["clips_changed"] == 0
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)  # the winner's, nothing more
    assert await reserving(api, tenant_id) == []  # the loser's entry went with its room


async def test_a_retry_refused_for_clips_another_took_reserves_once_for_those_still_failed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry read two failed clips; a concurrent one took the first: refused for both, it
    reserves again for the second alone, which fits."""
    tenant_id, auth = await limited(api, daily_budget_usd=0.7)  # $0.25 + $0.50 do not fit
    created = (await api.create(auth, scenes(2))).json()
    project_id = created["project_id"]
    first_task, second_task = (result["task_uuid"] for result in created["results"])
    await fail(api, project_id, first_task)
    held = HeldReservations(api, monkeypatch, held=2)
    taking_first = retry_at_once(api, project_id, auth)  # read the first clip failed
    await held.arrived(0)
    await fail(api, project_id, second_task)
    taking_both = retry_at_once(api, project_id, auth)  # read both failed
    await held.arrived(1)

    held.go[0].set()
    first = await asyncio.wait_for(taking_first, DEADLINE_S)
    held.go[1].set()
    second = await asyncio.wait_for(taking_both, DEADLINE_S)

    assert first.status_code == 202, first.text
    assert first.json()["clips_changed"] == 1
    assert second.status_code == 202, second.text
    assert second.json()["clips_changed"] == 1
    assert await retried_clips(api, project_id) == [0, 1]
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)


async def test_a_retry_refused_while_the_one_holding_the_room_writes_its_clips_is_409(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused for room a retry of the same project holds and read before that one wrote
    its clips, a retry cannot tell yet whether it has anything left to do: 409 with
    Retry-After, whose retry is answered 0. Not a 402 (a budget spent until midnight)."""
    tenant_id, auth = await limited(api, daily_budget_usd=0.75)
    project_id = await two_failed_clips(api, auth)
    writes = ClipWrites(api, monkeypatch, 0, held=True)
    winning = retry_at_once(api, project_id, auth)
    await asyncio.wait_for(writes.sent.wait(), DEADLINE_S)  # reserved, writing its first clip

    refused = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    problem = assert_problem(refused, 409)
    assert problem["title"] == "Request In Progress"
    assert refused.headers["Retry-After"] == "1"
    writes.released.set()
    won = await asyncio.wait_for(winning, DEADLINE_S)
    assert won.json()["clips_changed"] == 2
    again = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    assert again.status_code == 202, again.text
    assert again.json()["clips_changed"] == 0
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)
    # The winner's clips are written: a refusal for room is judged on the room alone again.
    await end_retried_clips_failed(api, project_id)
    assert (await api.create(auth, scenes(2))).status_code == 202  # $0.50 of the $0.75
    assert_problem(await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth), 402)


async def test_a_retry_refused_while_one_that_gave_a_lost_clip_back_writes_the_other_is_409(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry that lost one of its clips to another retry gives that clip's charge back at
    once, but it still holds the room of its other clip, which it is writing: a retry refused
    for that room is told to come back (409), not that the budget is spent (402)."""
    tenant_id, auth = await limited(api, daily_budget_usd=0.75)
    created = (await api.create(auth, scenes(2))).json()  # $0.50 reserved
    project_id = created["project_id"]
    first_task, second_task = (result["task_uuid"] for result in created["results"])
    await fail(api, project_id, first_task)
    held = HeldReservations(api, monkeypatch, held=2)
    taking_first = retry_at_once(api, project_id, auth)  # read the first clip failed
    await held.arrived(0)
    await fail(api, project_id, second_task)
    taking_both = retry_at_once(api, project_id, auth)  # read both failed
    await held.arrived(1)
    held.go[0].set()
    assert (await asyncio.wait_for(taking_first, DEADLINE_S)).json()["clips_changed"] == 1
    writes = ClipWrites(api, monkeypatch, 1, held=True)
    held.go[1].set()  # $0.25 + $0.50: it fits, loses the first clip, gives its $0.25 back
    await asyncio.wait_for(writes.sent.wait(), DEADLINE_S)  # writing the second clip
    await end_retried_clips(api, project_id, {0: 0.45})  # $0.45 + $0.25 held: $0.05 left

    refused = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)

    assert_problem(refused, 409)
    writes.released.set()
    assert (await asyncio.wait_for(taking_both, DEADLINE_S)).json()["clips_changed"] == 1
    await ledger_is(api, tenant_id, open_clips=1, usd=0.7)
    assert await reserving(api, tenant_id) == []  # both retries done with their clips


async def reserving(api: Api, tenant_id: str) -> list[dict[str, Any]]:
    """The ledger's entries of reservations that may still be storing what they are for."""
    ledger = await api.db["tenant_ledgers"].find_one({"_id": tenant_id}, {"reserving": 1})
    assert ledger is not None
    entries: list[dict[str, Any]] = ledger.get("reserving", [])
    return entries


async def test_concurrent_retries_on_a_tight_budget_are_never_refused_for_each_others_room(
    api: Api,
) -> None:
    """Ten retries of one project at once, with three keys: each clip is followed again once,
    the others answer that there was nothing left (or 409 while it was written); none is
    told the budget one retry fits in is spent."""
    tenant_id, auth = await limited(api, daily_budget_usd=0.75)  # room for one retry's $0.50
    project_id = await two_failed_clips(api, auth)
    keys = [auth] + [
        {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"} for _ in range(2)
    ]

    answers = await asyncio.gather(
        *(
            api.client.post(f"/v1/projects/{project_id}/retry", headers=keys[i % 3])
            for i in range(10)
        )
    )

    statuses = Counter(answer.status_code for answer in answers)
    assert 402 not in statuses, statuses
    changed = [answer.json()["clips_changed"] for answer in answers if answer.status_code == 202]
    assert sum(changed) == 2, changed  # each clip followed again once
    await ledger_is(api, tenant_id, open_clips=2, usd=0.5)


async def two_failed_clips(api: Api, auth: dict[str, str]) -> str:
    """A two-scene project whose clips both failed (their reservations freed): its id."""
    created = (await api.create(auth, scenes(2))).json()  # $0.50 reserved
    project_id: str = created["project_id"]
    for result in created["results"]:
        await fail(api, project_id, result["task_uuid"])
    return project_id


async def end_retried_clips_failed(api: Api, project_id: str) -> None:
    for clip in (await stored(api, project_id)).clips:
        await fail(api, project_id, clip.task_uuid)


# --- a clip's end is settled once, however late its duplicate ---------------------------


async def others_fill_the_list(api: Api, tenant_id: str) -> None:
    """SETTLED_KEPT settlements of other clips land, as a busy tenant's do (or clips failed at
    once, a tenant flushing its own window): the ledger's list no longer shows a key before
    them. Pushed as their settlements push them, without moving the ledger."""
    others = [f"{secrets.token_hex(6)}.0:{uuid.uuid4()}" for _ in range(SETTLED_KEPT)]
    pushed = {"settled": {"$each": others, "$slice": -SETTLED_KEPT}}
    await api.db["tenant_ledgers"].update_one({"_id": tenant_id}, {"$push": pushed})


async def test_an_end_told_again_after_the_ledger_forgot_its_key_settles_nothing_again(
    api: Api,
) -> None:
    """A webhook and the poll chain, a redelivery, a dead letter replayed hours later, a
    reconciler's pass: a clip's end comes again after any number of other settlements."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0, max_clips_in_flight=5)
    created = (await api.create(auth, scenes(3))).json()  # $0.75 reserved
    project_id = created["project_id"]
    tasks = [result["task_uuid"] for result in created["results"]]
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    failed = TaskFailed(code="providerError", message="boom")
    late = TaskSucceeded(video_url="https://cdn.test/late.mp4", cost=0.3)
    await move_clip(api, project_id, tasks[0], video)
    await move_clip(api, project_id, tasks[1], failed)
    await fail(api, project_id, tasks[2], code="timedOut")
    await api.projects.record(project_id, 2, tasks[2], late)  # billed under its own key
    await ledger_is(api, tenant_id, open_clips=0, usd=0.7)
    await others_fill_the_list(api, tenant_id)

    again = [
        await api.projects.record(project_id, scene, tasks[scene], end)
        for scene, end in ((0, video), (1, failed), (2, late))
    ]

    assert not any(change.applied for change in again)
    await ledger_is(api, tenant_id, open_clips=0, usd=0.7)


async def test_a_task_found_at_runware_after_an_old_releases_cancel_frees_nothing_again(
    api: Api,
) -> None:
    """The release before freed a queued clip's charge at its cancel (the project records no
    key). A charged chain that finds its task at Runware later, however late (behind its lane,
    through an outage), marks it processing through the repair: it frees nothing again."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
    project_id, task = created["project_id"], created["results"][0]["task_uuid"]
    await api.client.post(f"/v1/projects/{project_id}/cancel", headers=auth)
    held = (await stored(api, project_id)).clips[0].attempts[task].charge
    assert held is not None
    # As that release left it: the charge on the clip, freed by the cancel, no attempt held.
    await api.db["projects"].update_one(
        {"_id": project_id},
        {"$set": {"clips.0.charge": held.model_dump()}, "$unset": {f"clips.0.attempts.{task}": ""}},
    )
    await LedgerStore(api.db).settle(
        tenant_id, held, charges.task_end(task, ClipStatus.CANCELLED, None)
    )
    await ledger_is(api, tenant_id, open_clips=0, usd=0)
    await others_fill_the_list(api, tenant_id)

    change = await api.projects.mark_processing(project_id, 0, task, token="its-submit-chain")

    assert not change.applied
    await ledger_is(api, tenant_id, open_clips=0, usd=0)


#: the end a crash interrupts
VIDEO = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)


async def one_clip(api: Api) -> tuple[str, str, str]:
    """A budgeted tenant's one-scene project ($0.25 reserved): (tenant, project, task)."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(1))).json()
    return tenant_id, created["project_id"], created["results"][0]["task_uuid"]


async def told_again_it_is_settled_once(
    api: Api, tenant_id: str, project_id: str, task: str
) -> None:
    """The interrupted end's message is delivered again, and replayed once SETTLED_KEPT other
    settlements came: the ledger counts its end once ($0.40 paid, nothing in flight)."""
    redelivered = await api.projects.record(project_id, 0, task, VIDEO)
    await others_fill_the_list(api, tenant_id)
    replayed = await api.projects.record(project_id, 0, task, VIDEO)

    assert not redelivered.applied
    assert not replayed.applied
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)


class Settlements(PlayedWrite):
    """The ledger's settlements, played (:class:`PlayedWrite`)."""

    def __init__(self, api: Api, monkeypatch: pytest.MonkeyPatch, **play: Any) -> None:
        super().__init__(**play)
        settle = api.projects.ledgers.settle

        async def played(*args: Any) -> bool:
            done: bool = await self.play(lambda: settle(*args))
            return done

        monkeypatch.setattr(api.projects.ledgers, "settle", played)


async def test_a_crash_before_the_ledgers_inc_is_settled_once_by_the_redelivery(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, project_id, task = await one_clip(api)
    Settlements(api, monkeypatch, lost=AutoReconnect("connection lost"))
    with pytest.raises(AutoReconnect):
        await move_clip(api, project_id, task, VIDEO)  # the clip's end written, then the crash
    monkeypatch.undo()
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)

    await told_again_it_is_settled_once(api, tenant_id, project_id, task)


async def test_a_crash_before_a_chains_never_submitted_end_is_settled_is_settled_once_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(1))).json()["project_id"]  # $0.25 reserved
    clip = (await stored(api, project_id)).clips[0]
    assert clip.lease is not None
    await cancelled(api, auth, project_id)  # held with the queued task
    given_up = {"code": "clipGivenUp", "message": "cancelled before Runware had it"}
    Settlements(api, monkeypatch, lost=AutoReconnect("connection lost"))
    with pytest.raises(AutoReconnect):  # the task's end written, then the crash
        await api.projects.never_submitted(
            project_id, 0, clip.task_uuid, given_up, token=clip.lease.token
        )
    monkeypatch.undo()
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)

    # The chain's word told again (its message redelivered, asked, not found): freed once.
    for _ in range(2):
        again = await api.projects.never_submitted(
            project_id, 0, clip.task_uuid, given_up, token=clip.lease.token
        )
        assert not again
        await ledger_is(api, tenant_id, open_clips=0, usd=0.0)


async def test_a_crash_after_the_ledgers_inc_before_the_project_records_it_settles_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's list of recent keys makes the redelivery a no-op on the ledger, which the
    project then records: a later duplicate is not asked of the ledger at all."""
    tenant_id, project_id, task = await one_clip(api)
    records = PlayedWrite(lost=AutoReconnect("connection lost"))
    collection = api.projects._projects
    update_one = collection.update_one

    async def lost(query: dict[str, Any], update: Any, **options: Any) -> Any:
        return await records.play(lambda: update_one(query, update, **options))

    monkeypatch.setattr(collection, "update_one", lost)
    with pytest.raises(AutoReconnect):
        await move_clip(api, project_id, task, VIDEO)
    monkeypatch.undo()
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)  # settled, not recorded

    await told_again_it_is_settled_once(api, tenant_id, project_id, task)


async def test_a_cancels_settlement_a_crash_cut_off_is_made_once_by_the_settle_sweep(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No message stands behind a cancel: the settlement it owes is marked on the project in
    its write, and the poller's settle sweep makes it if the api's ``$inc`` never came (an
    outage, or the api dying, between the two writes)."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(1))).json()["project_id"]  # $0.25 reserved
    await with_a_stray_of_its_own_task(api, project_id, scene_index=0)
    clip = (await stored(api, project_id)).clips[0]
    assert clip.charge is not None
    await cancelled_before_the_ledger(api, auth, project_id, monkeypatch)
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)  # a second cancel finds it ended

    sweep = settle_sweep(api)
    assert await sweep.run_once() == 1

    await ledger_is(api, tenant_id, open_clips=0, usd=0.0)
    assert await sweep.run_once() == 0
    doc = await project_doc(api, project_id)
    assert "settle_due_at" not in doc
    assert doc["settled"] == [f"{clip.charge.id}:{clip.task_uuid}"]


async def test_a_cancels_owed_settlement_is_its_clips_charges_not_a_strays_of_its_task(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clip's own task as a stray with a video and a reservation of its own (a release
    before left it, and settled it then: neither the project nor, long after, the ledger's
    list shows it) ends under the same task: the sweep makes only the settlement the cancel
    owed, named by its charge."""
    tenant_id, auth = await limited(api, daily_budget_usd=10.0)
    project_id = (await api.create(auth, scenes(1))).json()["project_id"]  # $0.25 reserved
    clip = (await stored(api, project_id)).clips[0]
    assert clip.charge is not None
    its_own = clip.charge.model_copy(update={"id": "stray"}).model_dump()
    video = {"video_url": "https://v/stray.mp4", "cost": 0.1, "charge": its_own}
    await with_a_stray_of_its_own_task(api, project_id, scene_index=0, status="success", **video)
    await cancelled_before_the_ledger(api, auth, project_id, monkeypatch)

    assert await settle_sweep(api).run_once() == 1

    await ledger_is(api, tenant_id, open_clips=0, usd=0.0)
    doc = await project_doc(api, project_id)
    assert doc["settled"] == [f"{clip.charge.id}:{clip.task_uuid}"]


async def cancelled_before_the_ledger(
    api: Api, auth: dict[str, str], project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel the project; the connection goes between the cancel's write and the ``$inc``."""

    async def lost(*_args: Any) -> bool:
        raise AutoReconnect("the connection went between the cancel's write and the $inc")

    with monkeypatch.context() as losing, capture_logs():
        losing.setattr(api_state(api).projects.ledgers, "settle", lost)
        response = await api.client.post(f"/v1/projects/{project_id}/cancel", headers=auth)
    assert_problem(response, 503)
    assert (await stored(api, project_id)).clips[0].status == "cancelled"


def settle_sweep(api: Api) -> SettleSweep:
    """A poller's sweep, on the clock the api wrote the mark with (the database's)."""
    return SettleSweep(api.projects, clock=api_state(api).projects.now, after_s=0.0, batch_size=10)


async def test_a_cancel_marks_a_settlement_owed_only_where_it_frees_a_charge_itself(
    api: Api,
) -> None:
    """A tenant without a ledger pays nothing for the mark; nor does a cancel that holds a
    charge with its task (its chain or its follow settles it, a message behind each)."""
    plain = await api.keys.create_tenant("plain")
    plain_auth = {"Authorization": f"Bearer {await api.keys.issue_key(plain)}"}
    _, limited_auth = await limited(api, daily_budget_usd=10.0)
    owed: dict[str, list[str]] = {}
    for case, auth in (("plain", plain_auth), ("held", limited_auth), ("freed", limited_auth)):
        project_id = (await api.create(auth, scenes(2))).json()["project_id"]
        if case == "freed":
            await with_a_stray_of_its_own_task(api, project_id, scene_index=1)
        await cancelled(api, auth, project_id)
        doc = await project_doc(api, project_id)
        owed[case] = doc.get("settle_owed", [])
        assert ("settle_due_at" in doc) == bool(owed[case])

    clip = (await stored(api, project_id)).clips[1]
    assert clip.charge is not None
    assert owed == {"plain": [], "held": [], "freed": [f"1:{clip.charge.id}:{clip.task_uuid}"]}


async def project_doc(api: Api, project_id: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = await api.db["projects"].find_one({"_id": project_id})
    assert doc is not None
    return doc


async def with_a_stray_of_its_own_task(
    api: Api, project_id: str, *, scene_index: int, status: str = "failed", **fields: Any
) -> None:
    """The queued clip's own task in its attempts, as a release before could leave it (a
    stray): its cancel holds nothing for a chain's word, it frees the clip's charge itself."""
    clip = (await stored(api, project_id)).clips[scene_index]
    stray = {"status": status, "queued_at": clip.queued_at, **fields}
    await api.db["projects"].update_one(
        {"_id": project_id},
        {"$set": {f"clips.{scene_index}.attempts.{clip.task_uuid}": stray}},
    )


class Commands(monitoring.CommandListener):
    """Counts the commands a client sends, by name and collection."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        if isinstance(collection, str):
            self.sent[event.command_name, collection] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest_asyncio.fixture(loop_scope="module")
async def counted(api: Api, mongo_url: str) -> AsyncIterator[tuple[ProjectStore, Commands]]:
    """A store on the API's database whose commands are counted."""
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, uuidRepresentation="standard", tz_aware=True, event_listeners=[commands]
    )
    try:
        yield ProjectStore(client[api.db.name]), commands
    finally:
        await client.close()


async def test_a_clip_end_costs_a_tenant_with_a_ledger_one_operation_more_and_others_none(
    api: Api, counted: tuple[ProjectStore, Commands]
) -> None:
    """The settlement and the project's record of it; a duplicate asks the ledger nothing."""
    store, commands = counted
    plain_tenant = await api.keys.create_tenant("plain")
    plain = {"Authorization": f"Bearer {await api.keys.issue_key(plain_tenant)}"}
    _, limits = await limited(api, daily_budget_usd=10.0)
    video = TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    sent: dict[str, list[Counter[tuple[str, str]]]] = {}

    for name, auth in (("plain", plain), ("limited", limits)):
        created = (await api.create(auth, scenes(1))).json()
        project_id, task = created["project_id"], created["results"][0]["task_uuid"]
        clip = (await stored(api, project_id)).clips[0]
        assert clip.lease is not None
        await api.projects.mark_processing(project_id, 0, task, token=clip.lease.token)
        sent[name] = []
        for _ in ("the end", "told again"):
            commands.sent.clear()
            await store.record(project_id, 0, task, video)
            sent[name].append(commands.sent.copy())

    (plain_end, plain_again), (limited_end, limited_again) = sent["plain"], sent["limited"]
    assert not any(collection == "tenant_ledgers" for _, collection in plain_end + plain_again)
    assert limited_end - plain_end == Counter(
        {("update", "tenant_ledgers"): 1, ("update", "projects"): 1}
    )
    assert plain_end - limited_end == Counter()
    assert limited_again == plain_again


# --- reelflow-admin tenant recount ------------------------------------------------------

Admin = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def admin(api: Api, settings_for: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> Admin:
    """``reelflow-admin ARGS`` on the API's database, in a thread (it runs an event loop of
    its own): (exit code, stdout, stderr)."""
    settings = settings_for(
        AdminSettings,
        mongo_database=api.db.name,
        # ``tenant limits`` counts the tenant's unreserved spend again once the api reserves
        # with new limits: after this API's key cache (none) and a create's insert
        auth_cache_ttl_s=0,
        mongo_timeout_s=2,
        cost_fallback_usd_per_s=PRICE_PER_S,
    )

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with capture_logs():
            code = await asyncio.to_thread(main, list(argv), settings=settings)
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def kept_reservation(api: Api, auth: dict[str, str], clips: int) -> None:
    """A create whose insert never landed and whose project could not be read: its reservation
    of ``clips`` is kept, held by no project (``reservation_not_released``)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        Inserts(api, monkeypatch, lost=AutoReconnect("connection lost"))

        async def unreadable(*_args: Any, **_kwargs: Any) -> None:
            raise AutoReconnect("still gone")

        monkeypatch.setattr(api_state(api).projects, "get", unreadable)
        assert_problem(await api.create(auth, scenes(clips)), 503)


async def reserved_a_while_ago(api: Api, tenant_id: str) -> None:
    """The tenant's last reservation was made long enough ago for its clips to be stored."""
    long_ago = datetime.now(UTC) - timedelta(seconds=2 * RESERVATION_LANDS_S)
    await api.db["tenant_ledgers"].update_one(
        {"_id": tenant_id}, {"$set": {"reserved_at": long_ago}}
    )


async def ledger_doc(api: Api, tenant_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await api.db["tenant_ledgers"].find_one({"_id": tenant_id})
    return found


def recounted(out: str) -> list[str]:
    """The recount's row: the ledger's open, the count, the correction."""
    header, row, *_ = out.splitlines()
    assert header.split() == ["LEDGER_OPEN", "COUNTED", "CORRECTION"]
    return row.split()


async def test_a_recount_frees_what_a_kept_reservation_holds_and_the_tenant_creates_again(
    api: Api, admin: Admin
) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=3)
    assert (await api.create(auth, scenes(1))).status_code == 202
    await kept_reservation(api, auth, clips=2)
    assert_problem(await api.create(auth, scenes(1)), 429)
    await reserved_a_while_ago(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    assert recounted(out) == ["3", "1", "-2"]
    assert "open set to 1" in out
    assert (await api.create(auth, scenes(2))).status_code == 202
    # Counted exactly: the stored project's clip and the two new ones are all the room.
    assert_problem(await api.create(auth, scenes(1)), 429)


async def test_a_recount_leaves_a_right_ledger_as_it_is(api: Api, admin: Admin) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=5, daily_budget_usd=10.0)
    created = (await api.create(auth, scenes(3))).json()
    tasks = [result["task_uuid"] for result in created["results"]]
    await finish(api, created["project_id"], tasks[0])
    await fail(api, created["project_id"], tasks[1])
    await reserved_a_while_ago(api, tenant_id)
    before = await ledger_doc(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    assert recounted(out) == ["1", "1", "+0"]
    assert "nothing written" in out
    assert await ledger_doc(api, tenant_id) == before


async def test_a_dry_run_shows_the_correction_and_writes_nothing(api: Api, admin: Admin) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=2)
    await kept_reservation(api, auth, clips=2)
    await reserved_a_while_ago(api, tenant_id)
    before = await ledger_doc(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id, "--dry-run")

    assert code == 0, err
    assert recounted(out) == ["2", "0", "-2"]
    assert "dry run: nothing written" in out
    assert await ledger_doc(api, tenant_id) == before
    assert_problem(await api.create(auth, scenes(1)), 429)


async def test_a_ledger_that_moves_during_the_count_is_not_overwritten(
    api: Api, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=5)
    created = (await api.create(auth, scenes(2))).json()
    tasks = [result["task_uuid"] for result in created["results"]]
    await kept_reservation(api, auth, clips=2)  # open 4, 2 of them held by nothing
    await reserved_a_while_ago(api, tenant_id)
    count = TenantClips.in_flight
    loop = asyncio.get_running_loop()

    async def a_clip_ends_after_the_count(*args: Any) -> int:
        counted = await count(*args)
        # In the command's thread: a clip ends, its settlement lands, before the correction.
        ended = fail(api, created["project_id"], tasks[0])
        asyncio.run_coroutine_threadsafe(ended, loop).result(DEADLINE_S)
        return counted

    monkeypatch.setattr(TenantClips, "in_flight", a_clip_ends_after_the_count)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 1
    assert recounted(out) == ["4", "2", "-2"]
    assert "the tenant's ledger moved while counting; run it again" in err
    # the settlement's, not the count's: its estimate freed, the kept reservation's kept
    await ledger_is(api, tenant_id, open_clips=3, usd=0.75)
    monkeypatch.setattr(TenantClips, "in_flight", count)
    code, out, err = await admin("tenant", "recount", tenant_id)
    assert code == 0, err
    assert recounted(out) == ["3", "1", "-2"]
    await ledger_is(api, tenant_id, open_clips=1, usd=0.75)


async def test_an_end_written_but_not_yet_settled_is_counted_in_flight(
    api: Api, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip's end is two writes, the clip's then the ledger's: a count between them
    counts the clip, whose settlement then takes it off the corrected ledger."""
    tenant_id, auth = await limited(api, max_clips_in_flight=5)
    created = (await api.create(auth, scenes(2))).json()
    tasks = [result["task_uuid"] for result in created["results"]]
    await kept_reservation(api, auth, clips=1)  # open 3, 1 of them held by nothing
    await reserved_a_while_ago(api, tenant_id)
    settles = Settlements(api, monkeypatch, held=True)
    ending = asyncio.create_task(fail(api, created["project_id"], tasks[0]))
    await asyncio.wait_for(settles.sent.wait(), DEADLINE_S)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    assert recounted(out) == ["3", "2", "-1"]
    settles.released.set()
    await asyncio.wait_for(ending, DEADLINE_S)
    await ledger_is(api, tenant_id, open_clips=1, usd=0.5)  # the kept reservation's $0.25 too


async def test_a_recount_counts_an_end_its_project_records_settled_whatever_the_list_forgot(
    api: Api, admin: Admin
) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=5)
    created = (await api.create(auth, scenes(2))).json()
    await fail(api, created["project_id"], created["results"][0]["task_uuid"])
    await others_fill_the_list(api, tenant_id)  # within seconds of that end, a busy tenant's
    await reserved_a_while_ago(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    assert recounted(out) == ["1", "1", "+0"]
    await ledger_is(api, tenant_id, open_clips=1, usd=0.25)


async def test_a_recount_waits_for_a_reservation_whose_clips_may_not_be_stored(
    api: Api, admin: Admin
) -> None:
    tenant_id, auth = await limited(api, max_clips_in_flight=2)
    await kept_reservation(api, auth, clips=2)  # just now
    before = await ledger_doc(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 1
    assert out == ""
    assert re.search(r"the tenant reserved clips \d+ s ago, .* run it again in \d+ s", err), err
    assert await ledger_doc(api, tenant_id) == before


async def test_a_recount_counts_an_end_owed_to_the_settle_sweep_in_flight_however_old(
    api: Api, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconciler's pass died between an end's write and the ledger's ``$inc`` more than
    SETTLE_WINDOW_S ago (the pollers were down): its settlement is still to come, from the
    settle sweep, so a recount in between counts it, and the sweep takes it off once."""
    tenant_id, auth = await limited(api, max_clips_in_flight=5)
    created = (await api.create(auth, scenes(1))).json()
    project_id, task = created["project_id"], created["results"][0]["task_uuid"]
    long_ago = ProjectStore(
        api.db, clock=lambda: datetime.now(UTC) - timedelta(seconds=SETTLE_WINDOW_S + 60)
    )

    async def died(*_args: Any) -> bool:
        raise RuntimeError("the pass died between the end's write and the ledger's $inc")

    monkeypatch.setattr(long_ago.ledgers, "settle", died)
    read = (await stored(api, project_id)).clips[0]
    with pytest.raises(RuntimeError):
        await long_ago.record(project_id, 0, task, VIDEO, unattended=read)
    await reserved_a_while_ago(api, tenant_id)

    code, out, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    assert recounted(out) == ["1", "1", "+0"]
    sweep = SettleSweep(api.projects, clock=api.projects.now, after_s=0.0, batch_size=10)
    assert await sweep.run_once() == 1
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4)
    code, out, err = await admin("tenant", "recount", tenant_id)
    assert code == 0, err
    assert recounted(out) == ["0", "0", "+0"]


# --- limits set during the day: what the tenant spent before counts ----------------------


async def plain(api: Api) -> tuple[str, dict[str, str]]:
    """A new tenant without limits (no ledger): its id and headers authenticating as it."""
    tenant_id = await api.keys.create_tenant("plain")
    return tenant_id, {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"}


async def spend(api: Api, auth: dict[str, str], *costs: float) -> str:
    """A project of one clip per cost, each ended with a video of that cost: its id."""
    created = (await api.create(auth, scenes(len(costs)))).json()
    for result, cost in zip(created["results"], costs, strict=True):
        video = TaskSucceeded(video_url=f"https://cdn.test/{result['task_uuid']}.mp4", cost=cost)
        await move_clip(api, created["project_id"], result["task_uuid"], video)
    project_id: str = created["project_id"]
    return project_id


def committed_rows(out: str) -> dict[str, list[str]]:
    """The table under the limits that ``tenant limits`` prints: period -> the other cells."""
    _, table, _spent = out.split("\n\n")
    header, *rows = table.splitlines()
    assert header.split() == ["PERIOD", "COMMITTED", "LIMIT", "LEFT"]
    return {row.split()[0]: row.split()[1:] for row in rows if not row.startswith("in flight")}


async def usage_and_ledger_today(api: Api, auth: dict[str, str]) -> tuple[float, float]:
    """Today's spend as ``reelflow usage`` shows it, and as the tenant's budget counts it."""
    usage = (await api.client.get("/v1/usage", headers=auth)).json()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    spent = next((entry["usd"] for entry in usage["days"] if entry["period"] == day), 0.0)
    return spent, usage["committed_usd"].get(day, 0.0)


async def test_a_daily_budget_set_during_the_day_counts_what_the_tenant_spent_before_it(
    api: Api, admin: Admin
) -> None:
    """A tenant spent $1.80 without limits; an operator sets a $2.00 daily budget: the next
    project that would go past it is refused, naming the $0.20 left, not the whole $2.00."""
    tenant_id, auth = await plain(api)
    await spend(api, auth, 0.5, 0.6, 0.7)
    day = datetime.now(UTC).strftime("%Y-%m-%d")

    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "2")

    assert code == 0, err
    assert committed_rows(out)[day] == ["$1.80", "$2.00", "$0.20"]
    problem = assert_problem(await api.create(auth, scenes(3)), 402)  # $0.75 more
    assert problem["limit"] == "daily_budget_usd"
    assert f"has $0.20 left for {day}" in problem["detail"]
    assert_problem(await api.create(auth, scenes(1)), 402)  # $0.25 does not fit either
    assert await usage_and_ledger_today(api, auth) == pytest.approx((1.8, 1.8))
    code, out, err = await admin("tenant", "limits", tenant_id)  # shown again, counted once
    assert code == 0, err
    assert committed_rows(out)[day] == ["$1.80", "$2.00", "$0.20"]


async def test_a_clip_in_flight_and_a_settlement_racing_the_ledgers_first_count_count_once(
    api: Api, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the first count of what the tenant spent and its write to the new ledger: the
    clip it counted in flight (at its estimate) ends, and a project the api reserved with the
    new limits is created and settles. Each counts once: the reserved one by its reservation
    and settlement only, the other by the counts, the second of which replaces its estimate
    by its cost."""
    tenant_id, auth = await plain(api)
    created = (await api.create(auth, scenes(2))).json()
    project_id = created["project_id"]
    running, ended = (result["task_uuid"] for result in created["results"])
    await move_clip(
        api, project_id, ended, TaskSucceeded(video_url="https://cdn.test/e.mp4", cost=0.4)
    )
    clip = (await stored(api, project_id)).clip_of_task(running)
    assert clip is not None
    assert clip.lease is not None
    await api.projects.mark_processing(
        project_id, clip.scene_index, running, token=clip.lease.token
    )
    count = UnreservedSpend.spent
    loop = asyncio.get_running_loop()
    counted: list[float] = []

    async def racing() -> None:
        video = TaskSucceeded(video_url="https://cdn.test/r.mp4", cost=0.3)
        await api.projects.record(project_id, clip.scene_index, running, video)
        reserved = (await api.create(auth, scenes(1))).json()  # $0.25 reserved
        assert "project_id" in reserved, reserved
        cheap = TaskSucceeded(video_url="https://cdn.test/c.mp4", cost=0.1)
        await move_clip(api, reserved["project_id"], reserved["results"][0]["task_uuid"], cheap)

    async def raced(self: UnreservedSpend, tenant: str, now: datetime) -> Any:
        spent = await count(self, tenant, now)
        if not counted:
            # In the command's thread, before the count's write to the ledger.
            asyncio.run_coroutine_threadsafe(racing(), loop).result(DEADLINE_S)
        counted.append(spent.day_usd)
        return spent

    monkeypatch.setattr(UnreservedSpend, "spent", raced)

    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "5")

    assert code == 0, err
    # The clip in flight at its estimate, then at its cost; never the reserved project's clip.
    assert counted == [pytest.approx(0.4 + 0.25), pytest.approx(0.4 + 0.3)]
    await ledger_is(api, tenant_id, open_clips=0, usd=0.4 + 0.3 + 0.1)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert committed_rows(out)[day] == ["$0.80", "$5.00", "$4.20"]
    assert await usage_and_ledger_today(api, auth) == pytest.approx((0.8, 0.8))


async def test_usage_and_the_ledger_agree_when_a_budget_comes_goes_and_comes_back(
    api: Api, admin: Admin
) -> None:
    """What the tenant spent with a ledger is counted by its reservations, what it spent
    without one by the counts: however limits change during the day, once every clip ended
    the budget counts what ``reelflow usage`` shows."""
    tenant_id, auth = await plain(api)
    await spend(api, auth, 0.5)
    assert (await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "10"))[0] == 0
    await spend(api, auth, 0.3, 0.2)  # reserved
    assert await usage_and_ledger_today(api, auth) == pytest.approx((1.0, 1.0))

    assert (await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "none"))[0] == 0
    await spend(api, auth, 0.15)  # no limits: reserved nowhere, the ledger kept
    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "1.2")

    assert code == 0, err
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert committed_rows(out)[day] == ["$1.15", "$1.20", "$0.05"]
    assert await usage_and_ledger_today(api, auth) == pytest.approx((1.15, 1.15))
    assert_problem(await api.create(auth, scenes(1)), 402)
    await reserved_a_while_ago(api, tenant_id)
    code, out, err = await admin("tenant", "recount", tenant_id)  # counts again: no change
    assert code == 0, err
    assert f"{day} $0.65 (was $0.65)" in out  # $0.50 + $0.15 without a reservation
    await ledger_is(api, tenant_id, open_clips=0, usd=1.15)


async def test_a_late_video_of_a_task_reserved_nowhere_billed_on_its_retrys_charge_counts_once(
    api: Api, admin: Admin
) -> None:
    """A tenant without limits: its task Runware lost fails; an operator sets a budget; the
    retry's task reserves and ends; the lost task's video comes after all, billed on the
    retry's charge (``<task>:late``). A count then must not count that video a second time."""
    tenant_id, auth = await plain(api)
    created = (await api.create(auth, scenes(1))).json()  # reserved nowhere
    project_id, lost = created["project_id"], created["results"][0]["task_uuid"]
    await fail(api, project_id, lost, code="taskFailedOrNotFound")
    assert (await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "5"))[0] == 0
    retried = await api.client.post(f"/v1/projects/{project_id}/retry", headers=auth)
    assert retried.status_code == 202, retried.text  # $0.25 reserved for the new task
    retry = (await stored(api, project_id)).clips[0].task_uuid
    await move_clip(
        api, project_id, retry, TaskSucceeded(video_url="https://cdn.test/q.mp4", cost=0.25)
    )
    late = TaskSucceeded(video_url="https://cdn.test/p.mp4", cost=0.3)
    await api.projects.record(project_id, 0, lost, late)
    await ledger_is(api, tenant_id, open_clips=0, usd=0.55)  # billed on the retry's charge

    await reserved_a_while_ago(api, tenant_id)
    code, _, err = await admin("tenant", "recount", tenant_id)

    assert code == 0, err
    await ledger_is(api, tenant_id, open_clips=0, usd=0.55)
    assert await usage_and_ledger_today(api, auth) == pytest.approx((0.55, 0.55))


async def test_clips_reserved_under_an_in_flight_limit_alone_count_when_a_budget_comes(
    api: Api, admin: Admin
) -> None:
    """An in-flight limit alone reserves each clip's estimate, so a budget set while its clips
    run counts them (not $0) and the api admits only what is left."""
    tenant_id, auth = await limited(api, max_clips_in_flight=50)
    assert (await api.create(auth, scenes(3))).status_code == 202
    await ledger_is(api, tenant_id, open_clips=3, usd=0.75)

    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "1")

    assert code == 0, err
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert committed_rows(out)[day] == ["$0.75", "$1.00", "$0.25"]
    assert_problem(await api.create(auth, scenes(2)), 402)
    assert (await api.create(auth, scenes(1))).status_code == 202


async def test_clips_reserved_at_0_before_estimates_count_at_their_estimate_when_a_budget_comes(
    api: Api, admin: Admin
) -> None:
    """Reserved at $0 by the code before (an in-flight limit alone held no estimate): a budget
    set while they run counts them at their estimate, an unpriced video settled at $0 too; a
    priced one as its settlement billed it. The command counts again after the api's cache."""
    tenant_id, auth = await limited(api, max_clips_in_flight=50)
    created = (await api.create(auth, scenes(3))).json()
    project_id = created["project_id"]
    await api.db["projects"].update_one(
        {"_id": project_id}, {"$set": {f"clips.{i}.charge.usd": 0.0 for i in range(3)}}
    )
    day, month = datetime.now(UTC).strftime("%Y-%m-%d"), datetime.now(UTC).strftime("%Y-%m")
    await api.db["tenant_ledgers"].update_one(
        {"_id": tenant_id}, {"$set": {f"committed.{day}": 0.0, f"committed.{month}": 0.0}}
    )
    priced, unpriced, _running = (result["task_uuid"] for result in created["results"])
    await move_clip(
        api, project_id, priced, TaskSucceeded(video_url="https://cdn.test/a.mp4", cost=0.4)
    )
    await move_clip(
        api, project_id, unpriced, TaskSucceeded(video_url="https://cdn.test/b.mp4", cost=None)
    )
    await ledger_is(api, tenant_id, open_clips=1, usd=0.4)

    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "1")

    assert code == 0, err
    assert "counting again in 2 s" in err  # a budget new to this ledger
    # $0.40 billed; the unpriced video and the clip still running at their $0.25 each.
    assert committed_rows(out)[day] == ["$0.90", "$1.00", "$0.10"]
    assert_problem(await api.create(auth, scenes(1)), 402)


async def test_a_second_count_that_cannot_run_says_how_to_make_it(
    api: Api, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, _ = await plain(api)
    count = LedgerStore.count_unreserved
    calls: list[int] = []

    async def failing_second(self: LedgerStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise AutoReconnect("connection lost")
        return await count(self, *args, **kwargs)

    monkeypatch.setattr(LedgerStore, "count_unreserved", failing_second)

    code, _, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "5")

    assert code == 1
    said = [line for line in err.splitlines() if "second count did not run" in line]
    assert len(said) == 1, err
    assert f"reelflow-admin tenant recount {tenant_id} after " in said[0]


async def test_a_scene_stored_without_a_duration_counts_at_the_default_durations_estimate(
    api: Api, admin: Admin
) -> None:
    """Counted in flight as the api estimates it (``CostEstimator.estimate``): a scene that
    names no duration lasts ``REELFLOW_DEFAULT_DURATION`` (4 s here), never 0 s."""
    tenant_id, auth = await plain(api)
    project_id = (await api.create(auth, scenes(1))).json()["project_id"]
    doc = await project_doc(api, project_id)
    scene = unpack_requests(doc["requests"])[0].model_copy(update={"duration": None})
    await api.db["projects"].update_one(
        {"_id": project_id}, {"$set": {"requests": pack_requests([scene])}}
    )

    code, out, err = await admin("tenant", "limits", tenant_id, "--daily-budget-usd", "5")

    assert code == 0, err
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert committed_rows(out)[day] == ["$1.00", "$5.00", "$4.00"]  # 4 s at $0.25


async def test_an_operator_sees_the_spend_of_a_tenant_without_a_budget_as_its_key_does(
    api: Api, admin: Admin
) -> None:
    # No budget: no ledger, and until now no admin command showed what it spent.
    tenant_id = await api.keys.create_tenant("unbudgeted")
    auth = {"Authorization": f"Bearer {await api.keys.issue_key(tenant_id)}"}
    for cost in (0.1, 0.2, None):
        created = (await api.create(auth, scenes(1))).json()
        video = TaskSucceeded(video_url="https://cdn.test/v.mp4", cost=cost)
        await move_clip(api, created["project_id"], created["results"][0]["task_uuid"], video)
    now = datetime.now(UTC)
    day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")

    code, out, err = await admin("tenant", "usage", tenant_id, "--json")

    assert code == 0, err
    assert json.loads(out) == (await api.client.get("/v1/usage", headers=auth)).json()
    assert f"tenant {tenant_id} has no budget" in err
    code, out, err = await admin("tenant", "usage", tenant_id)
    assert code == 0, err
    first, _, header, row = out.splitlines()
    assert first == (
        f"{month}  $0.30 over 2 priced clip(s) + 1 clip(s) of unknown cost, 3 project(s)"
        " (each counted on the UTC day it was created)"
    )
    assert header.split() == ["DAY", "SPENT", "PRICED", "UNPRICED", "PROJECTS"]
    assert row.split() == [day, "$0.30", "2", "1", "3"]
    code, out, err = await admin("tenant", "limits", tenant_id)
    assert code == 0, err
    assert f"spent {day} $0.30, {month} $0.30 (+ 1 clip(s) of unknown cost)" in out.splitlines()
    code, out, err = await admin("tenant", "usage", tenant_id, "--month", "2000-01", "--json")
    assert code == 0, err
    assert json.loads(out) == (await api.client.get("/v1/usage?month=2000-01", headers=auth)).json()
    assert (await admin("tenant", "usage", "no-such-tenant"))[:2] == (1, "")
