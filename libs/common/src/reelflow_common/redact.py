"""Secrets that travel in URLs never reach a log line, nor a message that names a URL.

Four do: a browser's API key as ``?token=`` on the WebSocket URL, a WebSocket
ticket as ``?ticket=`` (single-use, but a line logged before it was used would
still open a socket), the ``?signature=`` of a stored video's URL (whoever holds
it may fetch the video until it expires), and the webhook secret as a path
segment of ``/v1/webhooks/runware/{secret}``. uvicorn logs these
URLs (its access log, the WebSocket "[accepted]" lines). :func:`redact_event` is
one structlog processor in the chain every line goes through, structlog's own
and the stdlib's (uvicorn, aio-pika, pymongo) alike, so every service that calls
``configure_logging`` is covered, whatever logger a line comes from.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"

_URL_SECRETS = (
    re.compile(r"(?<=[?&]token=)[^&\s\"']+"),
    re.compile(r"(?<=[?&]ticket=)[^&\s\"']+"),
    re.compile(r"(?<=[?&]signature=)[^&\s\"']+"),
    re.compile(r"(?<=/webhooks/runware/)[^/?#\s\"']+"),
)
_MARKERS = ("token=", "ticket=", "signature=", "/webhooks/runware/")


def redact(text: str) -> str:
    """``text`` with every URL secret replaced by ``***``."""
    for pattern in _URL_SECRETS:
        text = pattern.sub(MASK, text)
    return text


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: redact every string value of a line (a stdlib line's text is
    its ``event``)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and any(marker in value for marker in _MARKERS):
            event_dict[key] = redact(value)
    return event_dict


def url_location(url: str) -> str:
    """Where ``url`` points, to print: its scheme, hosts and path, never its user part
    (``user:secret@``) nor its query, whose options carry secrets too
    (``tlsCertificateKeyFilePassword=``, ``authMechanismProperties=AWS_SESSION_TOKEN:``).
    Split as text, never resolved (a ``mongodb+srv`` URL's parser asks DNS); ``***`` for
    a string that is no URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    hosts = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hosts}{parts.path}"
