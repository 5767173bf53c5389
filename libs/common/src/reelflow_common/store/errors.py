"""Errors of the project and API-key stores."""

from __future__ import annotations

from reelflow_common.errors import ReelflowError


class IdempotencyConflict(ReelflowError):
    """An idempotency key was used again, within its lifetime, with another request body."""


class InvalidCursor(ReelflowError):
    """A pagination cursor that this store did not produce."""


class KeyOfAnotherTenant(ReelflowError):
    """An API key cannot be issued to a tenant: another tenant already holds it."""
