"""The reconcilers' Prometheus metrics: only the poller runs them (and ``reelflow-admin
reconcile``, which serves no metrics), so only the poller's ``/metrics`` exports them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from reelflow_common.tracking.chains import Action

PROJECTS_PAST_LEASE = Gauge(
    "reelflow_projects_past_lease",
    "Projects with a clip whose lease ran out more than the grace ago, as the reconciler's last"
    " pass found them (at most its batch size): chains the reconciler has to re-arm.",
)

CLIPS_RECONCILED_TOTAL = Counter(
    "reelflow_clips_reconciled_total",
    "Clips the reconciler settled after their chain stopped (lease run out), by action.",
    ["action"],
)


def action_label(action: Action) -> str:
    """The ``action`` label of reelflow_clips_reconciled_total."""
    return action.name.lower()


# Each action at 0 from the start: a counter with no series reads "No data" on a healthy system.
for _action in Action:
    CLIPS_RECONCILED_TOTAL.labels(action=action_label(_action))
