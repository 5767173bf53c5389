"""MongoDB access for projects: one insert per project, one guarded update per public change
(the changes of one project's clips that come together: one update for all, :mod:`together`).

The decisions are :mod:`transitions` (pure); this module applies them, turns
what an update returned into the events to publish (:mod:`eventlog`), finishes
a project whose last open clip ended, and repairs what a crash may have left
undone when a duplicate or redelivered message finds its change already made.
State changes are written with majority write concern; the repair read uses
majority read concern, so "already terminal" is never a write a failover rolls back.
"""

from __future__ import annotations

from reelflow_common.logging import get_logger
from reelflow_common.store.cancel import ProjectCancel
from reelflow_common.store.clipwrites import ClipWrites
from reelflow_common.store.copies import VideoCopies
from reelflow_common.store.creation import ProjectCreation
from reelflow_common.store.leases import ChainLeases
from reelflow_common.store.reads import ProjectReads
from reelflow_common.store.reconcile import ReconcilerQueries
from reelflow_common.store.retry import ProjectRetry
from reelflow_common.store.settle import SettlementsOwed

log = get_logger(__name__)


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
    """The ``projects`` collection."""
