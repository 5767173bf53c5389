"""The submitter's budget gate (``Budget.exceeded``): a clip is judged by the periods its charge
was reserved in, and told when those periods reset, which may have passed by then."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reelflow_common.accounting import TenantLimits
from reelflow_common.accounting.ledger import Budget, Charge, LedgerView
from reelflow_common.accounting.limits import Limit

CHARGE = Charge(id="c", usd=1.0, day="2026-11-30", month="2026-11")
SPENT = LedgerView(open=1, committed={"2026-11-30": 5.5, "2026-11": 5.5})


@pytest.mark.parametrize(
    ("limits", "limit", "now", "resets_at"),
    [
        pytest.param(
            TenantLimits(daily_budget_usd=5.0),
            Limit.DAILY_BUDGET_USD,
            datetime(2026, 11, 30, 18, 0, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            id="day-during-it",
        ),
        pytest.param(
            TenantLimits(daily_budget_usd=5.0),
            Limit.DAILY_BUDGET_USD,
            datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            id="day-gated-after-midnight",
        ),
        pytest.param(
            TenantLimits(monthly_budget_usd=5.0),
            Limit.MONTHLY_BUDGET_USD,
            datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            id="month-gated-after-its-end",
        ),
    ],
)
def test_a_spent_period_resets_when_the_charges_period_ends(
    limits: TenantLimits, limit: Limit, now: datetime, resets_at: datetime
) -> None:
    exceeded = Budget(limits=limits, ledger=SPENT).exceeded(CHARGE, now)

    assert exceeded is not None
    assert (exceeded.limit, exceeded.resets_at) == (limit, resets_at)


def test_a_period_with_room_passes() -> None:
    room = LedgerView(open=1, committed={"2026-11-30": 4.0, "2026-11": 4.0})
    limits = TenantLimits(daily_budget_usd=5.0, monthly_budget_usd=5.0)

    assert Budget(limits=limits, ledger=room).exceeded(CHARGE, datetime.now(UTC)) is None


def test_a_spent_month_is_the_one_to_wait_for_once_the_spent_day_has_ended() -> None:
    both = LedgerView(open=1, committed={"2026-12-01": 6.0, "2026-12": 60.0})
    limits = TenantLimits(daily_budget_usd=5.0, monthly_budget_usd=50.0)
    charge = Charge(id="c", usd=1.0, day="2026-12-01", month="2026-12")

    exceeded = Budget(limits=limits, ledger=both).exceeded(
        charge, datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    )

    assert exceeded is not None
    assert (exceeded.limit, exceeded.resets_at) == (
        Limit.MONTHLY_BUDGET_USD,
        datetime(2027, 1, 1, tzinfo=UTC),
    )
