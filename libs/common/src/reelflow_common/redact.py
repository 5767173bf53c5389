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

    Split as PyMongo splits a connection string, as text and never resolved (a
    ``mongodb+srv`` URL's parser asks DNS): the authority ends at the first ``/`` (at the
    first ``?`` when there is none), the user part at the authority's last ``@``; so a
    password with ``#``, ``?`` or ``@`` in it, which PyMongo takes unescaped, is never
    printed. ``***`` for a string that is no URL, whose hosts are not hosts, or with an
    ``@`` past its authority only (a user part cut short by a ``/`` or ``?`` in it)."""
    scheme, separator, rest = url.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return MASK
    if "/" in rest:
        authority, _, path = rest.partition("/")
        path = "/" + path.partition("?")[0]
    else:
        authority, path = rest.partition("?")[0], ""
    if "@" in rest and "@" not in authority:
        return MASK  # a user part cut short by a '/' or '?' in it: nothing is surely a host
    hosts = authority.rpartition("@")[2]
    if not _HOSTS.fullmatch(hosts) or not _PATH.fullmatch(path):
        return MASK
    return f"{scheme}://{hosts}{path}"


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: host names, IPv4 and bracketed IPv6 addresses, ports, commas between them
_HOSTS = re.compile(r"[A-Za-z0-9._\-:\[\],%]+")
_PATH = re.compile(r"(/[A-Za-z0-9._\-%/]*)?")
