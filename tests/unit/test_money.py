"""Every dollar amount a client reads is rounded as ``GET /v1/usage`` rounds it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from reelflow_cli.render import money
from reelflow_common.accounting.limits import TenantLimits
from reelflow_common.accounting.usage import PeriodUsage, TenantUsage
from reelflow_common.admin.cli import render_usage
from reelflow_common.admin.projects import project_state, render_project
from reelflow_common.domain import ClipRequest, ClipStatus, Counts
from reelflow_common.messages import AttemptSucceeded, AttemptView, ClipUpdated, ClipView
from reelflow_common.money import format_usd, round_usd
from reelflow_common.store import CostTotals, NewProject, Project
from reelflow_common.store.documents import new_project_document, project_from_document
from reelflow_common.store.models import Attempt
from reelflow_notifier.wire import event_message, snapshot_message

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
#: what MongoDB's $inc makes of three clips of $0.60
SUM = 0.6 + 0.6 + 0.6
#: a price times a duration, as a cost may come
PRICE = 0.1 * 3


def project_costing(usd: float, clip_cost: float) -> Project:
    new = NewProject(
        tenant_id="tenant-a",
        title="t",
        model="google:3@3",
        scenes=[ClipRequest(prompt="scene 0")],
    )
    doc = new_project_document(
        new, project_id="p1", task_uuids=["t0"], tokens=["k0"], now=T0, lease_until=T0
    )
    project = project_from_document(doc)
    clip = project.clips[0].model_copy(
        update={
            "status": ClipStatus.SUCCESS,
            "video_url": "https://v/0.mp4",
            "cost": clip_cost,
            "attempts": {
                "old": Attempt(
                    status=ClipStatus.SUCCESS, video_url="https://v/o.mp4", cost=clip_cost
                )
            },
        }
    )
    return project.model_copy(
        update={"cost": CostTotals(usd=usd, known=3, unknown=0), "clips": [clip]}
    )


def test_a_project_status_shows_its_cost_rounded_as_usage_does() -> None:
    project = project_costing(SUM, PRICE)

    status = project.public_status()
    wire = json.loads(status.wire_json())

    assert wire["cost"]["usd"] == status.wire()["cost"]["usd"] == 1.8
    assert wire["results"][0]["cost"] == 0.3
    assert wire["results"][0]["attempts"][0]["cost"] == 0.3
    listed = project.public_status(include_results=False).wire()
    assert listed["cost"]["usd"] == 1.8


def usage_of(*usds: float, committed: dict[str, float]) -> dict[str, Any]:
    """``GET /v1/usage``'s answer, as JSON, for projects costing ``usds`` in one day."""
    month, day = PeriodUsage(period="2026-12"), PeriodUsage(period="2026-12-01")
    for usd in usds:
        month, day = month.plus(usd, 1, 0), day.plus(usd, 1, 0)
    usage = TenantUsage(
        tenant_id="a",
        month=month,
        days=[day],
        limits=TenantLimits(daily_budget_usd=20.0),
        clips_in_flight=0,
        committed_usd=committed,
    )
    answer: dict[str, Any] = json.loads(usage.model_dump_json())
    return answer


def test_usage_shows_spend_and_what_is_committed_rounded() -> None:
    # The ledger's $inc sums: three clips of $0.60, and one of them settled back to nothing.
    usage = usage_of(0.6, 0.6, 0.6, committed={"2026-12-01": SUM, "2026-12": 5.5e-17})

    assert usage["month"]["usd"] == usage["days"][0]["usd"] == 1.8
    assert usage["committed_usd"] == {"2026-12-01": 1.8, "2026-12": 0.0}


def test_usage_rounds_its_sum_once_not_each_project() -> None:
    # Three projects of 0.4 of a millionth each: rounding each step would keep $0 forever.
    usage = usage_of(4e-7, 4e-7, 4e-7, committed={})

    assert usage["month"]["usd"] == usage["days"][0]["usd"] == round_usd(3 * 4e-7) == 0.000001


def test_a_snapshot_shows_the_cost_rounded() -> None:
    snapshot = snapshot_message(project_costing(SUM, PRICE))

    assert snapshot["project"]["cost"]["usd"] == 1.8
    assert snapshot["project"]["results"][0]["cost"] == 0.3


def test_the_events_show_their_costs_rounded() -> None:
    counts = Counts(total_clips=1, completed=1, pending=0, failed=0)
    clip = ClipView(
        task_uuid="t0", scene_index=0, status=ClipStatus.SUCCESS, video_url="v", cost=PRICE
    )
    updated = ClipUpdated(project_id="p1", tenant_id="a", seq=2, clip=clip, counts=counts)
    attempt = AttemptView(task_uuid="t0", status=ClipStatus.SUCCESS, cost=PRICE)
    late = AttemptSucceeded(
        project_id="p1", tenant_id="a", seq=3, scene_index=0, attempt=attempt, counts=counts
    )

    assert event_message(updated)["clip"]["cost"] == 0.3
    assert event_message(late)["attempt"]["cost"] == 0.3
    assert json.loads(updated.model_dump_json())["clip"]["cost"] == 0.3


def test_the_admin_tool_writes_dollars_as_the_cli_does() -> None:
    """``reelflow-admin project show``: ``$1,234.50``, as ``reelflow get`` and ``usage`` print."""
    project = project_costing(1234.5, SUM)

    shown = render_project(project_state(project, []), now=T0).splitlines()

    assert "  cost         $1,234.50 (3 priced, 0 unpriced)" in shown
    assert any(line.endswith("  cost $1.80") for line in shown)  # the clip's, rounded


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (5.0, "$5.00"),
        (23.234, "$23.234"),  # as GET /v1/usage says it
        (0.0013, "$0.0013"),  # a cheap clip: not $0.00
        (1234.5, "$1,234.50"),
        (SUM, "$1.80"),  # $inc's 1.7999999999999998
        (0.1, "$0.10"),
        (0.00004, "$0.00"),  # below what Runware quotes
        (0.12345, "$0.1235"),
        (0.0, "$0.00"),
        (None, "-"),
    ],
)
def test_dollars_show_cents_and_up_to_four_decimals_in_the_admin_tool_and_the_cli(
    usd: float | None, shown: str
) -> None:
    assert format_usd(usd) == shown
    assert money(usd) == shown  # the CLI's twin, which does not import reelflow_common


def test_the_admin_tools_usage_shows_what_the_api_says_and_a_cheap_clip_is_not_free() -> None:
    """``reelflow-admin tenant usage``: ``$23.234`` where ``GET /v1/usage`` says 23.234 (not
    ``$23.23``), and a clip at Runware's $0.0013 is not ``$0.00``."""
    month = PeriodUsage(period="2026-12").plus(23.234, 1, 0).plus(0.0013, 1, 0)
    days = [
        PeriodUsage(period="2026-12-01").plus(23.234, 1, 0),
        PeriodUsage(period="2026-12-02").plus(0.0013, 1, 0),
    ]
    usage = TenantUsage(tenant_id="a", month=month, days=days, limits=TenantLimits())

    rows = [line.split() for line in render_usage(usage).splitlines()]

    assert rows[0][:2] == ["2026-12", "$23.2353"]
    assert ["2026-12-01", "$23.234", "1", "0", "1"] in rows
    assert ["2026-12-02", "$0.0013", "1", "0", "1"] in rows
