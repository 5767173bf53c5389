"""Times as the CLI prints them: in UTC, and saying so (the API's days and months are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_minute(value: object) -> str:
    """``2026-12-04 10:11 UTC`` for an RFC 3339 time the API sent (whatever its offset);
    anything else as it came, but for its seconds and beyond (it is the server's text)."""
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text[:16].replace("T", " ")
    if moment.tzinfo is None:  # the API always says its offset; without one, not said here
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
