"""What a tenant spent per UTC day and month, summed from its projects' cost totals.

Read-side only: the hot path writes nothing for it. Each project's ``cost``
(dollars of the tasks Runware said the price of, and how many finished without
a price) is kept exact by the clips' own guarded updates; a project counts on
the UTC day it was created. One query per call, on the ``tenant_newest`` index.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from reelflow_common.accounting.ledger import LedgerStore
from reelflow_common.accounting.limits import TenantLimits, day_key, month_resets_at
from reelflow_common.money import Usd
from reelflow_common.mongo import Database


class PeriodUsage(BaseModel):
    """Spend in one period: ``usd`` of ``known_cost_clips``; ``unknown_cost_clips`` are apart.

    ``usd`` is kept as the projects' sums add up and rounded once, as it is written out.
    """

    model_config = ConfigDict(frozen=True)

    period: str
    usd: Usd = 0.0
    known_cost_clips: int = 0
    unknown_cost_clips: int = 0
    projects: int = 0

    def plus(self, usd: float, known: int, unknown: int) -> PeriodUsage:
        return PeriodUsage(
            period=self.period,
            usd=self.usd + usd,
            known_cost_clips=self.known_cost_clips + known,
            unknown_cost_clips=self.unknown_cost_clips + unknown,
            projects=self.projects + 1,
        )


class TenantUsage(BaseModel):
    """A month of a tenant's spend, by day, with its limits and what its ledger holds now."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    month: PeriodUsage
    days: list[PeriodUsage]
    limits: TenantLimits
    clips_in_flight: int | None = None
    #: estimates of clips not ended yet plus what ended ones cost, per period (budgeted tenants)
    committed_usd: dict[str, Usd] = {}


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The first instant of ``2026-12`` and of the month after it (UTC)."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return start, month_resets_at(start)


class UsageStore:
    """Reads a tenant's spend from ``projects`` and its ledger."""

    def __init__(self, db: Database, ledgers: LedgerStore) -> None:
        self._projects = db["projects"]
        self._ledgers = ledgers

    async def month(self, tenant_id: str, month: str, limits: TenantLimits) -> TenantUsage:
        start, end = month_bounds(month)
        found = self._projects.find(
            {"tenant_id": tenant_id, "created_at": {"$gte": start, "$lt": end}},
            {"cost": 1, "created_at": 1},
        )
        total = PeriodUsage(period=month)
        days: dict[str, PeriodUsage] = {}
        async for doc in found:
            cost = doc.get("cost") or {}
            usd = float(cost.get("usd", 0.0))
            known, unknown = int(cost.get("known", 0)), int(cost.get("unknown", 0))
            day = day_key(doc["created_at"].replace(tzinfo=doc["created_at"].tzinfo or UTC))
            days[day] = days.get(day, PeriodUsage(period=day)).plus(usd, known, unknown)
            total = total.plus(usd, known, unknown)
        usage = TenantUsage(
            tenant_id=tenant_id,
            month=total,
            days=[days[day] for day in sorted(days)],
            limits=limits,
        )
        if not limits.needs_ledger:
            return usage
        ledger = await self._ledgers.read(tenant_id)
        # The month asked for and its days ("2026-12", "2026-12-01", ...): the ledger keeps
        # every period since it began.
        committed = {
            period: usd for period, usd in ledger.committed.items() if period.startswith(month)
        }
        return usage.model_copy(update={"clips_in_flight": ledger.open, "committed_usd": committed})
