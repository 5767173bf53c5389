"""MongoDB stores shared by the services: projects (with their clips and events) and API keys."""

from reelflow_common.messages import Event
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
)
from reelflow_common.store.projects import IDEMPOTENCY_TTL, ProjectStore

__all__ = [
    "IDEMPOTENCY_TTL",
    "ApiKeyStore",
    "Clip",
    "ContendedProject",
    "CreateResult",
    "Event",
    "IdempotencyConflict",
    "InvalidCursor",
    "KeyOfAnotherTenant",
    "NewClip",
    "NewProject",
    "Outcome",
    "Project",
    "ProjectStore",
    "hash_key",
]
