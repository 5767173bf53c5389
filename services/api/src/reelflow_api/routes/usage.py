"""``/v1/usage``: what the tenant spent per UTC day and month, its limits and what is committed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from reelflow_api.deps import State, TenantGrant
from reelflow_api.problems import problem_responses
from reelflow_api.validation import UTC_MONTH
from reelflow_common.accounting import TenantUsage, month_key

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=problem_responses(401, 422, 503))


@router.get("", response_model=TenantUsage)
async def get_usage(
    state: State,
    grant: TenantGrant,
    month: Annotated[
        str | None,
        Query(
            pattern=UTC_MONTH.pattern,
            description=UTC_MONTH.description,
            examples=[UTC_MONTH.example],
        ),
    ] = None,
) -> TenantUsage:
    """Spend per day of a month (the current one by default), summed from the tenant's projects.

    A project counts on the UTC day it was created. ``usd`` sums the clips whose cost
    Runware reported (``known_cost_clips``); ``unknown_cost_clips`` finished without a
    price and are not in it. For a tenant with a budget or an in-flight limit,
    ``clips_in_flight`` and ``committed_usd`` (estimates of unfinished clips plus what
    finished ones cost, per day and month) are what the limits are checked against.
    """
    month = month or month_key(state.projects.now())
    return await state.usage.month(grant.tenant_id, month, grant.limits)
