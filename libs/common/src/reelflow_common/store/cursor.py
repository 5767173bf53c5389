"""Opaque pagination cursors: the sort key (``created_at``, ``_id``) of the last item shown,
bound to the listing that returned it (its tenant and its status filter).

A cursor reused with another filter (``?status=completed``'s with ``?status=cancelled``)
or another tenant's key would page through a listing it was not made for; it is refused
instead (``InvalidCursor``, a 422), each with a message a client can act on. The filter is
held as it is (only a status value is ever read back, or echoed in a message). The tenant is
not in the cursor at all: the listing's query is scoped by tenant, and the caller checks
that the cursor's project is the tenant's (``ProjectReads.list``). An unkeyed digest of the
tenant id, as format 2 held, let anyone who saw a cursor confirm a guessed tenant id; a
keyed one would need a secret only for a clearer 422. Cursors of format 2 are still read
(their digest ignored); those of the first format (``<millis>:<project id>``, no binding)
are refused: start again.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from reelflow_common.domain import ProjectStatus
from reelflow_common.store.errors import InvalidCursor
from reelflow_common.store.timefmt import as_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the format's tag: a cursor without one is of the first, unbound format
_VERSION = "3"
#: the format before this one: a tenant digest (ignored now) before the project id
_WITH_DIGEST = "2"
NOT_OURS = "not a cursor this API returned; start again without one"
OTHER_TENANT = "a cursor returned to another tenant's API key; start again without one"
#: what a cursor's filter may be: none, or a status
_FILTERS = frozenset({""} | {status.value for status in ProjectStatus})


def encode_cursor(created_at: datetime, project_id: str, *, status: str | None) -> str:
    """A URL-safe token; milliseconds because that is what MongoDB stores."""
    millis = (as_utc(created_at) - _EPOCH) // timedelta(milliseconds=1)
    fields = [_VERSION, str(millis), status or "", project_id]
    return base64.urlsafe_b64encode(":".join(fields).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, status: str | None) -> tuple[datetime, str]:
    """The sort key a cursor stands for; ``InvalidCursor`` when it is not one of ours, or was
    returned for another status filter (its message says which). Whether it was returned to
    this tenant is the caller's to check, by its project."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        version, millis_text, made_for, project_id = raw.split(":", 3)
        if version == _WITH_DIGEST:
            project_id = project_id.split(":", 1)[1]
        created_at = _EPOCH + timedelta(milliseconds=int(millis_text))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, IndexError) as exc:
        raise InvalidCursor(NOT_OURS) from exc
    if version not in (_VERSION, _WITH_DIGEST) or not project_id or not millis_text.isdigit():
        raise InvalidCursor(NOT_OURS)
    if made_for not in _FILTERS:
        raise InvalidCursor(NOT_OURS)  # never echoed: only a status value is
    if made_for != (status or ""):
        if made_for:
            was, send = f"status={made_for}", "with that filter"
        else:
            was, send = "no status filter", "without a status filter"
        raise InvalidCursor(
            f"a cursor of the listing with {was}; send it {send}, or start again without a cursor"
        )
    return created_at, project_id
