"""Keep credentials out of uvicorn's lines: ``?token=`` (an API key) and ``?ticket=``.

uvicorn logs each WebSocket's path with its query string ("WebSocket
/v1/ws?token=… [accepted]"); this filter rewrites both before any handler
formats the line. A ticket is single-use, but a line logged before it was used
would still open a socket.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s\"']+|(?<=[?&]ticket=)[^&\s\"']+")
_LOGGERS = ("uvicorn.error", "uvicorn.access")


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN.sub("***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_tokens_in_uvicorn_logs() -> None:
    """Install the filter on uvicorn's loggers (once, however often called)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactTokens) for existing in logger.filters):
            logger.addFilter(RedactTokens())
