"""MongoDB access for projects: one insert per project, one guarded update per public change
(the changes of one project's clips that come together: one update for all, :mod:`together`).

The decisions are :mod:`transitions` (pure). :class:`ProjectStore` applies them, one
part per role, each in a module of its own over one shared state (:mod:`collection`):

- :mod:`writes`: applying a guarded write, alone or merged; its settlement, its events
  (:mod:`eventlog`), and the finish of a project whose last open clip it ended
- :mod:`repair`: a write whose guard did not hold (a duplicate or redelivered message),
  repaired: what a crash may have left undone, never re-applied
- :mod:`clipwrites`: the hot path, a clip's changes by the chains that follow it
- :mod:`leases`: the chains' tokens and leases
- :mod:`creation`: new projects and their Idempotency-Keys (:mod:`inserts`: inserted together)
- :mod:`reads`: reads for the api, the notifier and operators
- :mod:`cancel`, :mod:`retry`: the api's cancel and retry of a project
- :mod:`copies`: reelflow's copies of the videos, and the copy sweep's queries
- :mod:`reconcile`: the reconcilers' queries
- :mod:`settle`: the settle sweep's queries (:mod:`owed`: what is owed, pure)

Parts of one class rather than collaborators: every service holds one store and calls
its methods by role, and the parts call each other's (a cancel applies a write, a write
that fails is repaired); one object keeps both without forwarding each method.
"""

from __future__ import annotations

from reelflow_common.store.cancel import ProjectCancel
from reelflow_common.store.clipwrites import ClipWrites
from reelflow_common.store.copies import VideoCopies
from reelflow_common.store.creation import ProjectCreation
from reelflow_common.store.leases import ChainLeases
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.reconcile import ReconcilerQueries
from reelflow_common.store.retry import ProjectRetry
from reelflow_common.store.settle import SettlementsOwed


class ProjectStore(
    ProjectCreation,
    ProjectCancel,
    ProjectRetry,
    ProjectReads,
    ChainLeases,
    ClipWrites,
    VideoCopies,
    ReconcilerQueries,
    SettlementsOwed,
):
    """The ``projects`` collection: every part above, on the state its base makes
    (:class:`~reelflow_common.store.collection.ProjectCollection`)."""
