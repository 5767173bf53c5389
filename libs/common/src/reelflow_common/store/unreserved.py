"""What a tenant's tasks that no charge counts spent, per UTC day and month: what its
ledger's ``unreserved`` counts (ARCHITECTURE.md, "The ledger", *Unreserved spend*).

A task is counted by a charge when it holds one (``clips.<i>.charge``, ``attempts.<task>
.charge``), or when its end settles on the clip's (``transitions.charges.counted_on``, the
rule ``attempt_end`` settles by): the ledger counts it from its reservation to its end's
settlement. Every other task (bought while the tenant had no ledger, or by an api replica
that had not read its new limits yet) reaches no ledger by itself, so it is counted from its
project, on the day and month the project was created, as a reservation and its settlements
would have counted it (not as ``usage`` sums, known costs only): a video at what it cost (at
its estimate when Runware did not say: never $0), a task queued or still run at Runware at
its estimate, a failed one at nothing. A task under a $0 charge (an in-flight limit alone,
before every reservation held its estimate) adds its estimate where its ledger holds $0: in
flight, and an unpriced video. Each task is counted one way, decided from one document read
at once, whatever the ledger does meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from reelflow_common.accounting.estimates import CostEstimator
from reelflow_common.accounting.ledger import Charge, Spent
from reelflow_common.accounting.limits import day_key, month_key
from reelflow_common.accounting.usage import month_bounds
from reelflow_common.domain import OPEN_CLIP_STATUSES, ClipStatus
from reelflow_common.money import round_usd
from reelflow_common.mongo import Database
from reelflow_common.store.documents import clip_from_document, unpack_requests
from reelflow_common.store.models import ClipState
from reelflow_common.store.timefmt import as_utc
from reelflow_common.store.transitions.charges import counted_on

#: a task given up on that a chain still follows at Runware (a cancelled processing clip's;
#: a timed-out clip's, followed late: ``Attempt.followed_late``): Runware may bill it
_FOLLOWED = (ClipStatus.QUEUED, ClipStatus.PROCESSING, ClipStatus.CANCELLED)


def unreserved_usd(clip: ClipState, estimate: float) -> float:
    """What the clip's tasks that no charge counts spent or may spend; ``estimate``: one task's.

    Each task once: the clip stands for its current task, ``attempts`` for the others (and
    for the clip's own task followed after it was given up on, whose video, if one came,
    is there and not on the clip).
    """
    total = _uncounted(
        counted_on(clip, clip.task_uuid),
        video=clip.status is ClipStatus.SUCCESS,
        cost=clip.cost,
        in_flight=clip.status in OPEN_CLIP_STATUSES,
        estimate=estimate,
    )
    for task_uuid, attempt in clip.attempts.items():
        total += _uncounted(
            counted_on(clip, task_uuid),
            video=attempt.status is ClipStatus.SUCCESS,
            cost=attempt.cost,
            in_flight=(attempt.status in _FOLLOWED or attempt.followed_late)
            and not attempt.end_recorded,
            estimate=estimate,
        )
    return total


def _uncounted(
    charge: Charge | None, *, video: bool, cost: float | None, in_flight: bool, estimate: float
) -> float:
    """What of one task no ledger counts: all of it without a charge (a video at its cost,
    at ``estimate`` unpriced; in flight at ``estimate``); with a $0 charge (reserved without
    an estimate: ``$0`` in flight, an unpriced video settled at $0), ``estimate`` there."""
    if charge is not None and charge.usd > 0:
        return 0.0  # its reservation and settlements count it
    if in_flight:
        return estimate
    if not video:
        return 0.0  # a failed task: Runware bills nothing
    if cost is None:
        return estimate  # never $0
    return cost if charge is None else 0.0  # a $0 charge's settlement billed the cost


class UnreservedSpend:
    """The ``projects`` collection, read for what a tenant's unreserved tasks spent."""

    def __init__(self, db: Database, estimator: CostEstimator, *, default_duration: float) -> None:
        self._projects = db["projects"]
        self._estimator = estimator
        self._default_duration = default_duration

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
            # What a reservation of its scenes would hold (the api's estimate of them).
            estimates = await self._estimator.estimate(
                doc["model"],
                unpack_requests(doc["requests"]),
                default_duration=self._default_duration,
            )
            usd = 0.0
            for scene, raw in doc["clips"].items():
                clip = clip_from_document(raw, int(scene), created_at=created_at)
                usd += unreserved_usd(clip, estimates[int(scene)])
            month_usd += usd
            if day_key(created_at) == day:
                day_usd += usd
        return Spent(
            day=day, month=month, day_usd=round_usd(day_usd), month_usd=round_usd(month_usd)
        )
