"""Each tenant's ledger (``tenant_ledgers``): clips in flight and money committed per period.

Only tenants with a budget or an in-flight limit have one, so a tenant without
limits pays no database operation for it. One document per tenant::

    {"_id": "<tenant>", "open": 3,
     "committed": {"2026-12-01": 1.2, "2026-12": 7.9},
     "limits": {"daily_budget_usd": 5.0, ...},
     "settled": ["<task uuid>", ...]}

``committed`` holds, per UTC day and month, the estimates of clips not yet
ended plus what ended clips cost (an unknown cost keeps its estimate). A create
or a retry **reserves** with one guarded ``find_one_and_update`` (upsert): the
filter says "still room for this much", so of two concurrent creates that
together exceed a budget one matches and the other is refused; nothing is read
first. A clip's end **settles** its reservation with one ``$inc``, made
idempotent by the bounded list of recently settled keys in the same document.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo import WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from reelflow_common.accounting.limits import (
    Limit,
    LimitExceeded,
    TenantLimits,
    day_key,
    day_resets_at,
    month_key,
    month_resets_at,
)
from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.mongo import Database, Document

log = get_logger(__name__)

COLLECTION = "tenant_ledgers"
#: how many settled keys a ledger remembers: duplicates come within seconds, not thousands of clips
SETTLED_KEPT = 1000
#: float sums of costs: a budget is reached within a millionth of a dollar
_EPSILON = 1e-6
#: a clip in flight ends within minutes; the client is told to try again after this
IN_FLIGHT_RETRY_AFTER_S = 30
_RESERVE_ATTEMPTS = 3


class Charge(BaseModel):
    """What a reservation holds on its tenant's ledger: an estimate, in the period it was made.

    ``id`` names the reservation, so that a clip reserved again (a retry) settles again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    usd: float
    day: str
    month: str

    def split(self, estimates: list[float]) -> list[Charge]:
        """One charge per clip of this reservation, each with its own estimate."""
        return [
            Charge(id=f"{self.id}.{i}", usd=usd, day=self.day, month=self.month)
            for i, usd in enumerate(estimates)
        ]


@dataclass(frozen=True)
class Settlement:
    """What a clip's change does to its reservation.

    ``ended``: the clip left the pending bucket (one fewer in flight, estimate released).
    ``billed``: Runware charged the task; ``cost`` None means it did not say how much
    (the estimate then stays committed).
    """

    #: what makes it unique for its charge (the task, or the task's late result)
    key: str
    ended: bool
    billed: bool
    cost: float | None = None

    def delta_usd(self, charge: Charge) -> float:
        released = -charge.usd if self.ended else 0.0
        if not self.billed:
            return released
        if self.cost is None:
            return released + (charge.usd if self.ended else 0.0)
        return released + self.cost


class LedgerView(BaseModel):
    """A ledger as read: in flight, committed per period."""

    model_config = ConfigDict(frozen=True)

    open: int = 0
    committed: dict[str, float] = {}

    def committed_in(self, period: str) -> float:
        return float(self.committed.get(period, 0.0))


class LedgerStore:
    """The ``tenant_ledgers`` collection."""

    def __init__(self, db: Database) -> None:
        self._ledgers = db.get_collection(COLLECTION, write_concern=WriteConcern(w="majority"))

    async def reserve(
        self, tenant_id: str, limits: TenantLimits, *, clips: int, usd: float, now: datetime
    ) -> Charge | None:
        """Hold ``clips`` in flight and ``usd`` for today and this month, or raise LimitExceeded.

        None when the tenant's limits need no ledger (nothing written).
        """
        if not limits.needs_ledger:
            return None
        day, month = day_key(now), month_key(now)
        _refuse_alone(limits, clips=clips, usd=usd, now=now)
        guard: Document = {"_id": tenant_id}
        if limits.max_clips_in_flight is not None:
            guard["open"] = {"$not": {"$gt": limits.max_clips_in_flight - clips}}
        if limits.daily_budget_usd is not None:
            room = limits.daily_budget_usd - usd + _EPSILON
            guard[f"committed.{day}"] = {"$not": {"$gt": room}}
        if limits.monthly_budget_usd is not None:
            room = limits.monthly_budget_usd - usd + _EPSILON
            guard[f"committed.{month}"] = {"$not": {"$gt": room}}
        update = {
            "$inc": {"open": clips, f"committed.{day}": usd, f"committed.{month}": usd},
            "$set": {"limits": limits.model_dump()},
        }
        for _ in range(_RESERVE_ATTEMPTS):
            try:
                # Upsert: a tenant's first reservation creates its ledger. A ledger that
                # exists but has no room makes the upsert insert a second _id: refused.
                await self._ledgers.find_one_and_update(guard, update, upsert=True)
                return Charge(id=secrets.token_hex(6), usd=usd, day=day, month=month)
            except DuplicateKeyError:
                ledger = await self.read(tenant_id)
                _refuse_with(limits, ledger, clips=clips, usd=usd, now=now)
                # Room appeared between the write and the read (a clip ended): try again.
        raise TransientError("the tenant's ledger kept changing; the request may be retried")

    async def release(self, tenant_id: str, charge: Charge, *, clips: int) -> None:
        """Give back a reservation nothing was created for (an idempotent replay)."""
        await self._ledgers.update_one(
            {"_id": tenant_id},
            {
                "$inc": {
                    "open": -clips,
                    f"committed.{charge.day}": -charge.usd,
                    f"committed.{charge.month}": -charge.usd,
                }
            },
        )

    async def give_back(self, tenant_id: str, charges: Iterable[Charge]) -> None:
        """Release reservations no clip holds (one clip each), for a caller answering something
        else (an error, a replay). If MongoDB fails here, the rest stay committed: the tenant's
        room is understated, never overstated (``reservation_not_released`` is logged)."""
        try:
            for charge in charges:
                await self.release(tenant_id, charge, clips=1)
        except PyMongoError as exc:
            log.warning("reservation_not_released", tenant_id=tenant_id, error=repr(exc))

    async def settle(self, tenant_id: str, charge: Charge, settlement: Settlement) -> bool:
        """Apply a clip's change to the ledger once; False if this key was settled already."""
        key = f"{charge.id}:{settlement.key}"
        delta = settlement.delta_usd(charge)
        inc: dict[str, Any] = {}
        if settlement.ended:
            inc["open"] = -1
        if delta:
            inc[f"committed.{charge.day}"] = delta
            inc[f"committed.{charge.month}"] = delta
        update: Document = {
            "$push": {"settled": {"$each": [key], "$slice": -SETTLED_KEPT}},
        }
        if inc:
            update["$inc"] = inc
        found = await self._ledgers.update_one({"_id": tenant_id, "settled": {"$ne": key}}, update)
        return found.matched_count == 1

    async def read(self, tenant_id: str) -> LedgerView:
        doc = await self._ledgers.find_one({"_id": tenant_id}, {"open": 1, "committed": 1})
        return LedgerView() if doc is None else LedgerView.model_validate(doc)

    async def set_limits(self, tenant_id: str, limits: TenantLimits) -> None:
        """The limits the submitter's budget gate reads (the API reads them with the key).

        A tenant without a ledger gets one at its first reservation, with its limits.
        """
        await self._ledgers.update_one(
            {"_id": tenant_id}, {"$set": {"limits": limits.model_dump()}}
        )

    async def budget(self, tenant_id: str) -> Budget | None:
        """The tenant's budgets and what is committed (the submitter's gate); None: no ledger."""
        doc = await self._ledgers.find_one({"_id": tenant_id}, {"committed": 1, "limits": 1})
        if doc is None:
            return None
        return Budget(
            limits=TenantLimits.model_validate(doc.get("limits") or {}),
            ledger=LedgerView.model_validate(doc),
        )


@dataclass(frozen=True)
class Budget:
    """A tenant's budgets and its ledger, as read."""

    limits: TenantLimits
    ledger: LedgerView

    def exceeded(self, charge: Charge, now: datetime) -> LimitExceeded | None:
        """Whether the periods of ``charge`` are past their budget.

        ``committed`` already holds the clip's own estimate, so over means: what ended
        cost more than estimated, or an operator lowered the budget.
        """
        limits, ledger = self.limits, self.ledger
        checks = (
            (Limit.DAILY_BUDGET_USD, limits.daily_budget_usd, charge.day, day_resets_at(now)),
            (
                Limit.MONTHLY_BUDGET_USD,
                limits.monthly_budget_usd,
                charge.month,
                month_resets_at(now),
            ),
        )
        for limit, budget, period, resets_at in checks:
            if budget is not None and ledger.committed_in(period) > budget + _EPSILON:
                return LimitExceeded(
                    limit,
                    f"The tenant's {_name(limit)} of ${budget:.2f} is spent"
                    f" (${ledger.committed_in(period):.2f} committed for {period}).",
                    value=budget,
                    resets_at=resets_at,
                )
        return None


def _name(limit: Limit) -> str:
    return {
        Limit.DAILY_BUDGET_USD: "daily budget",
        Limit.MONTHLY_BUDGET_USD: "monthly budget",
        Limit.MAX_CLIPS_IN_FLIGHT: "limit of clips in flight",
    }.get(limit, limit.value)


def _refuse_alone(limits: TenantLimits, *, clips: int, usd: float, now: datetime) -> None:
    """A request that no ledger could ever take (more than the limit on its own)."""
    _refuse_with(limits, LedgerView(), clips=clips, usd=usd, now=now)


def _refuse_with(
    limits: TenantLimits, ledger: LedgerView, *, clips: int, usd: float, now: datetime
) -> None:
    """Raise LimitExceeded for the first limit ``ledger`` has no room in."""
    limit_in_flight = limits.max_clips_in_flight
    if limit_in_flight is not None and ledger.open + clips > limit_in_flight:
        raise LimitExceeded(
            Limit.MAX_CLIPS_IN_FLIGHT,
            f"{clips} more clips would put the tenant past its {_name(Limit.MAX_CLIPS_IN_FLIGHT)}"
            f" ({ledger.open} in flight, at most {limit_in_flight}).",
            value=limit_in_flight,
            retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
        )
    budgets = (
        (Limit.DAILY_BUDGET_USD, limits.daily_budget_usd, day_key(now), day_resets_at(now)),
        (Limit.MONTHLY_BUDGET_USD, limits.monthly_budget_usd, month_key(now), month_resets_at(now)),
    )
    for limit, budget, period, resets_at in budgets:
        if budget is None:
            continue
        committed = ledger.committed_in(period)
        if committed + usd > budget + _EPSILON:
            raise LimitExceeded(
                limit,
                f"This would cost about ${usd:.2f}; the tenant's {_name(limit)} of ${budget:.2f}"
                f" has ${max(budget - committed, 0.0):.2f} left for {period}.",
                value=budget,
                resets_at=resets_at,
            )
