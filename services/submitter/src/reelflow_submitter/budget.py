"""The submitter's budget gate: is the tenant's budget spent, before a clip costs anything?

One read of the tenant's ledger per ``ttl_s`` at most (per replica), shared by
every clip of the tenant submitted meanwhile: a project of 50 scenes costs a
read or two, not 50. The price: a budget that runs out is noticed up to
``ttl_s`` late, so a few more clips may go to Runware; their estimates were
reserved when their project was created, so the budget is passed by at most
what they cost beyond their estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from reelflow_common.accounting import Charge, LedgerStore, LimitExceeded
from reelflow_common.accounting.ledger import Budget


class BudgetGate:
    """Budgets read at most every ``ttl_s`` per tenant."""

    def __init__(
        self,
        ledgers: LedgerStore,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._ledgers = ledgers
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._read: dict[str, tuple[float, Budget | None]] = {}

    async def exceeded(self, tenant_id: str, charge: Charge, now: datetime) -> LimitExceeded | None:
        budget = await self._budget(tenant_id)
        return None if budget is None else budget.exceeded(charge, now)

    async def _budget(self, tenant_id: str) -> Budget | None:
        at = self._clock()
        cached = self._read.get(tenant_id)
        if cached is not None and at - cached[0] < self._ttl_s:
            return cached[1]
        budget = await self._ledgers.budget(tenant_id)
        if len(self._read) >= self._max_entries:
            self._read.clear()  # rare (that many budgeted tenants at once); simply read again
        self._read[tenant_id] = (at, budget)
        return budget
