"""The API key of an ``Authorization`` header, read one way wherever it is read."""

from __future__ import annotations

from starlette.types import Scope


def bearer_token(header: str) -> str | None:
    """The key of ``Bearer <key>`` (the scheme in any case, spaces around the key), or None."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def request_key(scope: Scope) -> str | None:
    """The API key a request's (first) ``Authorization`` header names, if any; not looked up."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None
