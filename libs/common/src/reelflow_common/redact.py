"""Secrets that travel in URLs never reach a log line.

Two do: a browser's API key as ``?token=`` on the WebSocket URL, and the webhook
secret as a path segment of ``/v1/webhooks/runware/{secret}``. uvicorn logs both
URLs (its access log, WebSocket "[accepted]" lines). :class:`RedactUrlSecrets`
rewrites them on the log handler itself, so every logger is covered, whatever
name it logs under and whether it propagates or not; :func:`redact_event` does
the same for structlog's own events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

MASK = "***"

_URL_SECRETS = (
    re.compile(r"(?<=[?&]token=)[^&\s\"']+"),
    re.compile(r"(?<=/webhooks/runware/)[^/?#\s\"']+"),
)


def redact(text: str) -> str:
    """``text`` with every URL secret replaced by ``***``."""
    for pattern in _URL_SECRETS:
        text = pattern.sub(MASK, text)
    return text


class RedactUrlSecrets(logging.Filter):
    """A handler filter: formats a stdlib record's message once and redacts it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):  # structlog's own events: see redact_event
            return True
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the same redaction on every string value of an event."""
    for key, value in event_dict.items():
        if isinstance(value, str) and ("token=" in value or "/webhooks/runware/" in value):
            event_dict[key] = redact(value)
    return event_dict
