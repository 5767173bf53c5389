"""The API key of a request's ``Authorization`` header, read one way wherever it is read
(:func:`reelflow_common.bearer.bearer_token`, which the notifier reads with too)."""

from __future__ import annotations

from starlette.types import Scope

from reelflow_common.bearer import bearer_token


def request_key(scope: Scope) -> str | None:
    """The API key a request's (first) ``Authorization`` header names, if any; not looked up."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None
