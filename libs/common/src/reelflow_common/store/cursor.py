"""Opaque pagination cursors: the sort key (``created_at``, ``_id``) of the last item shown."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from reelflow_common.store.errors import InvalidCursor
from reelflow_common.store.timefmt import as_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, project_id: str) -> str:
    """A URL-safe token; milliseconds because that is what MongoDB stores."""
    millis = (as_utc(created_at) - _EPOCH) // timedelta(milliseconds=1)
    raw = f"{millis}:{project_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The sort key a cursor stands for; ``InvalidCursor`` when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        millis_text, project_id = raw.split(":", 1)
        created_at = _EPOCH + timedelta(milliseconds=int(millis_text))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InvalidCursor("not a cursor of this listing") from exc
    if not project_id or not millis_text.isdigit():
        raise InvalidCursor("not a cursor of this listing")
    return created_at, project_id
