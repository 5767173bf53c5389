"""Errors of the project and API-key stores."""

from __future__ import annotations

from reelflow_common.errors import ReelflowError, TransientError


class IdempotencyConflict(ReelflowError):
    """An idempotency key was used again, within its lifetime, with another request body."""


class IdempotencyKeyChurn(TransientError):
    """Every insert of a create was refused for its idempotency key, and the project that
    held the key was gone each time it was looked up: nothing was stored; try again."""


class InvalidCursor(ReelflowError):
    """A pagination cursor this store did not produce, or produced for another listing (another
    tenant, another filter); its message says which, in words for the client."""


class KeyOfAnotherTenant(ReelflowError):
    """An API key cannot be issued to a tenant: another tenant already holds it."""


class KeyLookupsBusy(TransientError):
    """As many keys not known to be valid as a process looks up at once are being looked up:
    this one is refused rather than queued; try again shortly."""


class UntoldCost(ReelflowError):
    """A write whose change of the project's ``cost`` is not the videos its events tell (a bug
    in the code that built it): a replay would rebuild a wrong cost from them
    (``eventlog.materialize``), so it is never written."""
