"""The API key of an ``Authorization`` header, read one way wherever it is read."""

from __future__ import annotations


def bearer_token(header: str) -> str | None:
    """The key of ``Bearer <key>`` (the scheme in any case, spaces around the key), or None."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None
