"""What a tenant's tasks that hold no reservation spent, per UTC day and month: what its
ledger's ``unreserved`` counts (ARCHITECTURE.md, "The ledger", *Unreserved spend*).

A task holds a charge when it was reserved on the tenant's ledger (``clips.<i>.charge``, or
``attempts.<task>.charge`` once it moved there): the ledger counts it from its reservation to
its end's settlement. Every other task (bought while the tenant had no ledger, or by an api
replica that had not read its new limits yet) reaches no ledger by itself, so it is counted
from its project, on the day and month the project was created, as ``reelflow usage`` counts
it: a video at what it cost (at its estimate when Runware did not say: never $0), a task
queued or still run at Runware at its estimate, a failed one at nothing. The two sets never
meet (a task either holds a charge or not, in one document read at once), so nothing is
counted twice whatever the ledger does meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from reelflow_common.accounting.estimates import CostEstimator
from reelflow_common.accounting.ledger import Spent
from reelflow_common.accounting.limits import day_key, month_key
from reelflow_common.accounting.usage import month_bounds
from reelflow_common.domain import OPEN_CLIP_STATUSES, ClipStatus
from reelflow_common.money import round_usd
from reelflow_common.mongo import Database
from reelflow_common.store.documents import clip_from_document, unpack_requests
from reelflow_common.store.models import ClipState
from reelflow_common.store.timefmt import as_utc

#: a task given up on that a chain still follows at Runware (a cancelled processing clip's):
#: Runware may bill it
_FOLLOWED = (ClipStatus.QUEUED, ClipStatus.PROCESSING, ClipStatus.CANCELLED)


def unreserved_usd(clip: ClipState, estimate: float) -> float:
    """What the clip's tasks that hold no charge spent or may spend; ``estimate``: one task's.

    Each task once: the clip stands for its current task, ``attempts`` for the others (and
    for the clip's own task followed after it was given up on, whose video, if one came,
    is there and not on the clip).
    """
    total = 0.0
    if not _reserved(clip, clip.task_uuid):
        if clip.status is ClipStatus.SUCCESS:
            total += estimate if clip.cost is None else clip.cost
        elif clip.status in OPEN_CLIP_STATUSES:
            total += estimate
    for task_uuid, attempt in clip.attempts.items():
        if _reserved(clip, task_uuid):
            continue
        if attempt.status is ClipStatus.SUCCESS:
            total += estimate if attempt.cost is None else attempt.cost
        elif attempt.status in _FOLLOWED and not attempt.end_recorded:
            total += estimate
    return total


def _reserved(clip: ClipState, task_uuid: str) -> bool:
    """Whether the task holds a charge, on the clip or in ``attempts`` (a cancel moved it)."""
    attempt = clip.attempts.get(task_uuid)
    on_clip = task_uuid == clip.task_uuid and clip.charge is not None
    return on_clip or (attempt is not None and attempt.charge is not None)


class UnreservedSpend:
    """The ``projects`` collection, read for what a tenant's unreserved tasks spent."""

    def __init__(self, db: Database, estimator: CostEstimator) -> None:
        self._projects = db["projects"]
        self._estimator = estimator

    async def spent(self, tenant_id: str, now: datetime) -> Spent:
        """One read of the tenant's projects created in the month of ``now`` (on the
        ``tenant_newest`` index, as ``usage`` reads them): an operator's command only."""
        day, month = day_key(now), month_key(now)
        start, end = month_bounds(month)
        found = self._projects.find(
            {"tenant_id": tenant_id, "created_at": {"$gte": start, "$lt": end}},
            {"clips": 1, "created_at": 1, "model": 1, "requests": 1},
        )
        day_usd = month_usd = 0.0
        async for doc in found:
            created_at = as_utc(doc["created_at"])
            price = await self._estimator.price_per_s(doc["model"])
            requests = unpack_requests(doc["requests"])
            usd = 0.0
            for scene, raw in doc["clips"].items():
                clip = clip_from_document(raw, int(scene), created_at=created_at)
                duration = requests[int(scene)].duration or 0.0
                usd += unreserved_usd(clip, round_usd(price * duration))
            month_usd += usd
            if day_key(created_at) == day:
                day_usd += usd
        return Spent(
            day=day, month=month, day_usd=round_usd(day_usd), month_usd=round_usd(month_usd)
        )
