"""The API key of an ``Authorization`` header, read one way by the api and the notifier.

Per-key limits in both count the key this returns (the api's in-flight slots, the
notifier's sockets), and authentication looks the same key up: two readings of one
header would make two keys of one, or one of two.
"""

from __future__ import annotations


def bearer_token(header: str) -> str | None:
    """The key of ``Bearer <key>`` (the scheme in any case, spaces around the key), or None."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None
