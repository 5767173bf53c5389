"""A clip that times out whose task Runware finishes later, through the four services with
webhooks off (as ``make run`` runs them): the video is recorded in the clip's ``attempts``
and billed once, in the project's cost, the tenant's usage and its ledger.

Before the late follow, nothing asked Runware about that task again once its clip had failed
``timedOut``: the video Runware billed was never recorded (a billing investigator's repro:
``REELFLOW_POLL_MAX_AGE_S=15``, one scene of ``[sim:latency=300]``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from reelflow_common.accounting import TenantLimits
from reelflow_common.accounting.ledger import LedgerStore
from reelflow_common.store import ApiKeyStore
from reelflow_devtools.launcher import Stack
from tests.e2e.stack import e2e_config, started
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e

#: the ceiling, real seconds; the task below takes 300 simulated seconds, 15 real at 20x
MAX_AGE_S = 4
FINISHES_LATE = "a fox at dawn [sim:latency=300]"


@pytest.fixture
def stack(amqp_url: str, mongo_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield from started(
        e2e_config(
            amqp_url,
            mongo_url,
            tmp_path / "stack",
            webhooks=False,
            REELFLOW_POLL_MAX_AGE_S=str(MAX_AGE_S),
            REELFLOW_LATE_FOLLOW_S="120",
            REELFLOW_LATE_FOLLOW_MAX_DELAY_S="2",
        )
    )


async def test_a_timed_out_clips_video_that_comes_later_is_recorded_and_billed_once(
    stack: Stack,
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongo_url, tz_aware=True, timeoutMS=10_000
    )
    db = client[stack.config.database]
    keys = ApiKeyStore(db)
    tenant_id = await keys.create_tenant("late")
    await keys.set_limits(tenant_id, TenantLimits(daily_budget_usd=100, max_clips_in_flight=10))
    headers = {"Authorization": f"Bearer {await keys.issue_key(tenant_id)}"}
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as api:
            created = await api.post(
                "/v1/projects", json={"scenes": [{"prompt": FINISHES_LATE, "duration": 4}]}
            )
            assert created.status_code == 202, created.text
            project_id = created.json()["project_id"]

            async def status_when(ready: Any) -> dict[str, Any] | None:
                status: dict[str, Any] = (await api.get(f"/v1/projects/{project_id}")).json()
                return status if ready(status) else None

            timed_out = await eventually_returns(
                functools.partial(status_when, lambda s: s["all_complete"]),
                "the clip failed at the ceiling",
                PROCESS_DEADLINE_S,
                pause_s=PROCESS_PAUSE_S,
            )
            (clip,) = timed_out["results"]
            assert (timed_out["status"], clip["error"]["code"]) == ("failed", "timedOut")
            task_uuid = clip["task_uuid"]
            truth = await stack.sim_get(f"/__sim/tasks/{task_uuid}")
            assert truth["state"] == "processing"  # Runware runs it on, and will bill it

            status = await eventually_returns(
                functools.partial(status_when, lambda s: s["results"][0].get("attempts")),
                "the late video recorded in the clip's attempts",
                PROCESS_DEADLINE_S,
                pause_s=PROCESS_PAUSE_S,
            )
            usage = (await api.get("/v1/usage")).json()

        truth = await stack.sim_get(f"/__sim/tasks/{task_uuid}")
        assert (truth["state"], truth["billed"]) == ("success", True)
        (clip,) = status["results"]
        # The clip stays as it failed; the video is its task's attempt, with its cost.
        assert (status["status"], clip["status"], clip["error"]["code"]) == (
            "failed",
            "failed",
            "timedOut",
        )
        (attempt,) = clip["attempts"]
        assert (attempt["task_uuid"], attempt["status"]) == (task_uuid, "success")
        assert truth["video_uuids"][0] in attempt["video_url"]
        assert attempt["cost"] == pytest.approx(truth["cost"])
        # Billed once: the project's cost, the tenant's usage and its ledger.
        assert status["cost"]["usd"] == pytest.approx(truth["cost"])
        assert status["cost"]["known"] == 1
        assert usage["month"]["usd"] == pytest.approx(truth["cost"])
        assert (usage["month"]["known_cost_clips"], usage["clips_in_flight"]) == (1, 0)
        ledger = await LedgerStore(db).read(tenant_id)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        assert ledger.open == 0
        assert ledger.committed_in(day) == pytest.approx(truth["cost"])
    finally:
        await client.close()
