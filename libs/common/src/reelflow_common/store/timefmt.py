"""Timestamps as MongoDB keeps them and as the public API writes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: something that says what time it is (``DbClock.now`` in the services)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, in UTC, at the millisecond precision MongoDB stores.

    Truncating up front means a project built in memory equals the one read back,
    and cursors built from either compare the same.
    """
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one (a client without ``tz_aware``) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, written exactly as pydantic writes the event messages."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def millis(value: datetime) -> datetime:
    """``value`` truncated to the millisecond, as MongoDB stores it."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)
