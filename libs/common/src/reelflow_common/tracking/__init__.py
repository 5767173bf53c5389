"""Following a clip's task at Runware to its end.

What an answer means (:mod:`policy`, pure), recording it (:mod:`recorder`) and
the reconciler under every chain (:mod:`reconciler`, and :mod:`attempts` for the tasks
an earlier task's video replaced). The poller runs them all; ``reelflow-admin
reconcile`` runs the reconciler for one project.

Import from the modules themselves: a service that needs only :mod:`policy` (the
submitter) then loads neither the reconcilers nor the metrics only the poller exports.
"""
