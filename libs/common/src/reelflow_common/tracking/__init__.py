"""Following a clip's task at Runware to its end.

What an answer means (:mod:`policy`, pure), recording it (:mod:`recorder`) and
the reconciler under every chain (:mod:`reconciler`). The poller runs all three;
``reelflow-admin reconcile`` runs the reconciler for one project.
"""

from reelflow_common.tracking.policy import (
    TIMED_OUT,
    Keep,
    Policy,
    Record,
    Watch,
    describe,
    profile_of,
    profile_of_clip,
    progress_to_store,
    seconds_between,
    terminal_result,
)
from reelflow_common.tracking.reconciler import Action, Pass, Reconciler, Settled
from reelflow_common.tracking.recorder import ClipRecorder

__all__ = [
    "TIMED_OUT",
    "Action",
    "ClipRecorder",
    "Keep",
    "Pass",
    "Policy",
    "Reconciler",
    "Record",
    "Settled",
    "Watch",
    "describe",
    "profile_of",
    "profile_of_clip",
    "progress_to_store",
    "seconds_between",
    "terminal_result",
]
