"""MongoDB stores shared by the services: projects (with their clips and events) and API keys."""

from reelflow_common.store.auth import ApiKeyStore, hash_key
from reelflow_common.store.errors import (
    ContendedProject,
    IdempotencyConflict,
    InvalidCursor,
    KeyOfAnotherTenant,
)
from reelflow_common.store.models import (
    Clip,
    CreateResult,
    NewClip,
    NewProject,
    Outcome,
    Project,
    RetryOutcome,
)
from reelflow_common.store.projects import IDEMPOTENCY_TTL, ProjectStore

__all__ = [
    "IDEMPOTENCY_TTL",
    "ApiKeyStore",
    "Clip",
    "ContendedProject",
    "CreateResult",
    "IdempotencyConflict",
    "InvalidCursor",
    "KeyOfAnotherTenant",
    "NewClip",
    "NewProject",
    "Outcome",
    "Project",
    "ProjectStore",
    "RetryOutcome",
    "hash_key",
]
