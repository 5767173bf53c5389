"""When a chain renews its clip's lease: pure arithmetic every chain and the docs share.

A chain (the submits of a clip, then its checks) holds the clip's lease and
renews it only when its next step would come after ``until - margin``; its
steps are never further apart than half a lease, so a renewed lease always
outlives the next step by at least a quarter of a lease (broker and handler
delays included). A chain that stops (a lost or dead-lettered message, a crash)
stops renewing: its lease runs out and the reconciler re-arms the clip. A late follow's
steps (a task followed on after its clip timed out) may be longer: its renewal at such a
step makes its lease outlive the step (:func:`outliving`).
"""

from __future__ import annotations

from datetime import datetime, timedelta


def margin_s(lease_s: float) -> float:
    """How long before its lease runs out a chain renews it."""
    return lease_s / 4


def max_step_s(lease_s: float) -> float:
    """The longest wait between two steps of a chain."""
    return lease_s / 2


def bounded_step_s(delay_s: float, lease_s: float) -> float:
    return min(delay_s, max_step_s(lease_s))


def renewal_due(*, next_at: datetime, lease_until: datetime, lease_s: float) -> bool:
    """Whether a step at ``next_at`` falls too close to (or past) the end of the lease."""
    return next_at > lease_until - timedelta(seconds=margin_s(lease_s))


def renewed_until(now: datetime, lease_s: float) -> datetime:
    return now + timedelta(seconds=lease_s)


def outliving(next_at: datetime, lease_s: float) -> datetime:
    """A lease that outlives a step at ``next_at`` by half a lease: for a chain whose steps may
    be longer than :func:`max_step_s` (a late follow's), renewed at each such step."""
    return next_at + timedelta(seconds=max_step_s(lease_s))
