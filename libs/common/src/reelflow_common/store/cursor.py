"""Opaque pagination cursors: the sort key (``created_at``, ``_id``) of the last item shown,
bound to the listing that returned it (its tenant and its status filter).

A cursor reused with another filter (``?status=completed``'s with ``?status=cancelled``)
or another tenant's key would page through a listing it was not made for; it is refused
instead (``InvalidCursor``, a 422), each with a message a client can act on. The tenant is
held as a short digest (a cursor names no tenant), the filter as it is. Cursors of the
first format (``<millis>:<project id>``, no binding) are refused too: start again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime, timedelta

from reelflow_common.store.errors import InvalidCursor
from reelflow_common.store.timefmt import as_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the format's tag: a cursor without it is of the first, unbound format
_VERSION = "2"
NOT_OURS = "not a cursor this API returned; start again without one"


def _tenant_digest(tenant_id: str) -> str:
    """Enough of a hash to tell tenants apart, too little to name one."""
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:12]


def encode_cursor(
    created_at: datetime, project_id: str, *, tenant_id: str, status: str | None
) -> str:
    """A URL-safe token; milliseconds because that is what MongoDB stores."""
    millis = (as_utc(created_at) - _EPOCH) // timedelta(milliseconds=1)
    fields = [_VERSION, str(millis), status or "", _tenant_digest(tenant_id), project_id]
    return base64.urlsafe_b64encode(":".join(fields).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, tenant_id: str, status: str | None) -> tuple[datetime, str]:
    """The sort key a cursor stands for; ``InvalidCursor`` when it is not one of ours, or was
    returned for another tenant or another status filter (its message says which)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        version, millis_text, made_for, digest, project_id = raw.split(":", 4)
        created_at = _EPOCH + timedelta(milliseconds=int(millis_text))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InvalidCursor(NOT_OURS) from exc
    if version != _VERSION or not project_id or not millis_text.isdigit():
        raise InvalidCursor(NOT_OURS)
    if digest != _tenant_digest(tenant_id):
        raise InvalidCursor(
            "a cursor returned to another tenant's API key; start again without one"
        )
    if made_for != (status or ""):
        was = f"status={made_for}" if made_for else "no status filter"
        raise InvalidCursor(
            f"a cursor of the listing with {was}; send it with that filter, or start again"
            " without a cursor"
        )
    return created_at, project_id
