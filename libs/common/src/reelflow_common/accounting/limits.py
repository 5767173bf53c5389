"""A tenant's limits and the periods its budgets count in. Pure: no I/O.

Limits are set by an operator (``reelflow-admin tenant limits``) and checked by
the API before any money is spent. ``None`` means "no limit". Budgets count in
UTC days and UTC months: a day's budget resets at the next midnight (UTC), a
month's on the first of the next month.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.errors import ReelflowError


class Limit(StrEnum):
    """The names of the limits, as problem+json answers and the admin command spell them."""

    MAX_CLIPS_IN_FLIGHT = "max_clips_in_flight"
    MAX_SCENES_PER_PROJECT = "max_scenes_per_project"
    ALLOWED_MODELS = "allowed_models"
    DAILY_BUDGET_USD = "daily_budget_usd"
    MONTHLY_BUDGET_USD = "monthly_budget_usd"


class TenantLimits(BaseModel):
    """What a tenant may do; every field unset (None) is unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_clips_in_flight: int | None = Field(default=None, ge=1)
    max_scenes_per_project: int | None = Field(default=None, ge=1)
    allowed_models: list[str] | None = None
    daily_budget_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)

    @property
    def has_budget(self) -> bool:
        return self.daily_budget_usd is not None or self.monthly_budget_usd is not None

    @property
    def needs_ledger(self) -> bool:
        """Whether creating a project must reserve on the tenant's ledger (one write)."""
        return self.has_budget or self.max_clips_in_flight is not None


class LimitExceeded(ReelflowError):
    """A request would go past one of the tenant's limits; nothing was spent or reserved."""

    def __init__(
        self,
        limit: Limit,
        detail: str,
        *,
        value: float | int | list[str] | None,
        resets_at: datetime | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.limit = limit
        self.detail = detail
        self.value = value
        self.resets_at = resets_at
        self.retry_after_s = retry_after_s

    @property
    def is_budget(self) -> bool:
        return self.limit in (Limit.DAILY_BUDGET_USD, Limit.MONTHLY_BUDGET_USD)


def day_key(now: datetime) -> str:
    """The UTC day ``now`` falls in: ``2026-12-01``."""
    return now.astimezone(UTC).strftime("%Y-%m-%d")


def month_key(now: datetime) -> str:
    """The UTC month ``now`` falls in: ``2026-12``."""
    return now.astimezone(UTC).strftime("%Y-%m")


def day_resets_at(now: datetime) -> datetime:
    """When the day's budget starts afresh: the next UTC midnight."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def month_resets_at(now: datetime) -> datetime:
    """When the month's budget starts afresh: the first of the next UTC month."""
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def check_shape(limits: TenantLimits, *, scenes: int, model: str) -> None:
    """Refuse a project its own shape puts past a limit (no counter needed)."""
    if limits.max_scenes_per_project is not None and scenes > limits.max_scenes_per_project:
        raise LimitExceeded(
            Limit.MAX_SCENES_PER_PROJECT,
            f"{scenes} scenes is more than this tenant's limit of"
            f" {limits.max_scenes_per_project} per project.",
            value=limits.max_scenes_per_project,
        )
    if limits.allowed_models is not None and model not in limits.allowed_models:
        raise LimitExceeded(
            Limit.ALLOWED_MODELS,
            f"Model {model!r} is not one this tenant may use"
            f" ({', '.join(limits.allowed_models) or 'none'}).",
            value=limits.allowed_models,
        )
