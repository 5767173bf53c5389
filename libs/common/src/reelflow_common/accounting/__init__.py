"""Money and fairness per tenant: limits, budgets, reservations, cost estimates, usage."""

from reelflow_common.accounting.estimates import CostBook, CostEstimator, CostStats
from reelflow_common.accounting.ledger import Charge, KeyInProgress, LedgerStore, Settlement
from reelflow_common.accounting.limits import LimitExceeded, TenantLimits, day_key, month_key
from reelflow_common.accounting.usage import TenantUsage, UsageStore

__all__ = [
    "Charge",
    "CostBook",
    "CostEstimator",
    "CostStats",
    "KeyInProgress",
    "LedgerStore",
    "LimitExceeded",
    "Settlement",
    "TenantLimits",
    "TenantUsage",
    "UsageStore",
    "day_key",
    "month_key",
]
