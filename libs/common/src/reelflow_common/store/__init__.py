"""MongoDB stores shared by the services: projects (with their clips and events) and API keys."""

from reelflow_common.domain import CostTotals
from reelflow_common.messages import Event
from reelflow_common.store.auth import ApiKeyStore, hash_key
from reelflow_common.store.creation import IDEMPOTENCY_TTL
from reelflow_common.store.errors import (
    IdempotencyConflict,
    IdempotencyKeyChurn,
    InvalidCursor,
    KeyLookupsBusy,
    KeyOfAnotherTenant,
)
from reelflow_common.store.leases import new_token
from reelflow_common.store.models import (
    Attempt,
    ClipState,
    CreateResult,
    Lease,
    NewProject,
    Outcome,
    Project,
    ProjectScenesView,
    ProjectStatusView,
    SceneView,
    TaskFailed,
    TaskResult,
    TaskSucceeded,
    TaskVideo,
)
from reelflow_common.store.projects import ProjectStore
from reelflow_common.store.results import Change, ClipTask, ClipWithRequest, LateFollow
from reelflow_common.store.transitions.retries import TIMED_OUT

__all__ = [
    "IDEMPOTENCY_TTL",
    "TIMED_OUT",
    "ApiKeyStore",
    "Attempt",
    "Change",
    "ClipState",
    "ClipTask",
    "ClipWithRequest",
    "CostTotals",
    "CreateResult",
    "Event",
    "IdempotencyConflict",
    "IdempotencyKeyChurn",
    "InvalidCursor",
    "KeyLookupsBusy",
    "KeyOfAnotherTenant",
    "LateFollow",
    "Lease",
    "NewProject",
    "Outcome",
    "Project",
    "ProjectScenesView",
    "ProjectStatusView",
    "ProjectStore",
    "SceneView",
    "TaskFailed",
    "TaskResult",
    "TaskSucceeded",
    "TaskVideo",
    "hash_key",
    "new_token",
]
