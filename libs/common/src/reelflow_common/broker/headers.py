"""A header of a delivery as text: the one reading every consumer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def header_text(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """Header ``name`` as text; None if it is absent, not text, or bytes that are not UTF-8.

    aio-pika hands a header over as ``str`` or as ``bytes`` (an AMQP byte array,
    as some clients send strings); our own publishers send ``str``.
    """
    value = (headers or {}).get(name)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None
