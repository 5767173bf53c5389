"""Following a clip's task at Runware to its end.

What an answer means (:mod:`policy`, pure), recording it (:mod:`recorder`) and
the reconciler under every chain (:mod:`reconciler`, and :mod:`attempts` for the tasks
an earlier task's video replaced). The poller runs them all; ``reelflow-admin
reconcile`` runs the reconciler for one project.
"""

from reelflow_common.tracking.attempts import AttemptsReconciler
from reelflow_common.tracking.chains import Action, Pass, Settled
from reelflow_common.tracking.policy import (
    TIMED_OUT,
    Keep,
    Policy,
    Record,
    Watch,
    describe,
    profile_of,
    profile_of_clip,
    profile_of_request,
    progress_to_store,
    seconds_between,
    terminal_result,
)
from reelflow_common.tracking.reconciler import Reconciler
from reelflow_common.tracking.recorder import ClipRecorder

__all__ = [
    "TIMED_OUT",
    "Action",
    "AttemptsReconciler",
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
    "profile_of_request",
    "progress_to_store",
    "seconds_between",
    "terminal_result",
]
