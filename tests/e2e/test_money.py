"""Costs and budgets through the four services, against the simulator's ground truth."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from reelflow_common.accounting import TenantLimits
from reelflow_common.accounting.ledger import LedgerStore
from reelflow_common.store import ApiKeyStore
from reelflow_devtools.launcher import Stack
from tests.waiting import eventually_returns

pytestmark = pytest.mark.e2e

FAST = "[sim:latency=10]"


async def test_a_budgeted_tenants_costs_are_right_to_the_cent(shared_stack: Stack) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        shared_stack.mongo_url, tz_aware=True, timeoutMS=10_000
    )
    db = client[shared_stack.config.database]
    keys = ApiKeyStore(db)
    tenant_id = await keys.create_tenant("budgeted")
    await keys.set_limits(tenant_id, TenantLimits(daily_budget_usd=100, max_clips_in_flight=50))
    key = await keys.issue_key(tenant_id)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(
            base_url=shared_stack.api_url, headers=headers, timeout=60
        ) as api:
            ids = []
            for size in (3, 2):
                body = {
                    "scenes": [{"prompt": f"scene {i} {FAST}", "duration": 4} for i in range(size)]
                }
                created = await api.post("/v1/projects", json=body)
                assert created.status_code == 202, created.text
                ids.append(created.json()["project_id"])

            async def finished(project_id: str) -> dict[str, Any] | None:
                status: dict[str, Any] = (await api.get(f"/v1/projects/{project_id}")).json()
                return status if status["all_complete"] else None

            statuses = [
                await eventually_returns(
                    functools.partial(finished, project_id), "finished", 90, pause_s=0.2
                )
                for project_id in ids
            ]
            usage = (await api.get("/v1/usage")).json()

        truth = 0.0
        for status in statuses:
            costs = [
                (await shared_stack.sim_get(f"/__sim/tasks/{task}"))["cost"]
                for task in status["clips"]
            ]
            assert round(status["cost"]["usd"], 2) == round(sum(costs), 2)
            assert status["cost"]["known"] == len(costs)
            truth += sum(costs)
        assert round(usage["month"]["usd"], 2) == round(truth, 2)
        assert usage["month"]["known_cost_clips"] == 5
        assert usage["month"]["unknown_cost_clips"] == 0
        # Every estimate was settled against what its clip cost.
        ledger = await LedgerStore(db).read(tenant_id)
        assert ledger.open == 0
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        assert round(ledger.committed_in(day), 2) == round(truth, 2)
        assert usage["clips_in_flight"] == 0
    finally:
        await client.close()
