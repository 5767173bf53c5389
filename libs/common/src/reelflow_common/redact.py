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

A query parameter is known by its name as the services decode it (Starlette's
``parse_qsl``), not as it is written: ``?%74oken=<key>`` opens a WebSocket, and
uvicorn logs the query as it was sent.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote_plus

MASK = "***"

#: Query parameters whose value is a secret, by name as the services read them
#: (``query_params.get``), compared case-insensitively (a superset of what they accept).
_SECRET_PARAMETERS = frozenset({"token", "ticket", "signature"})

#: A query parameter's name: after a ``?`` or ``&``, up to its ``=``. Names hold no
#: ``?``, so a ``?`` inside another parameter's value (a URL in a URL) starts a new one.
_PARAMETER_NAME = re.compile(r"(?<=[?&])([^&=?\s\"']+)=")
#: A value: up to the next ``&``; a space or quote ends the URL inside a log line (uvicorn's
#: ``"WebSocket /v1/ws?token=..." [accepted]``). ``%26``, ``+`` and ``?`` stay inside it.
_PARAMETER_VALUE = re.compile(r"[^&\s\"']+")
_WEBHOOK_SECRET = re.compile(r"(?<=/webhooks/runware/)[^/?#\s\"']+")


def _is_secret_name(raw: str) -> bool:
    """Whether a name, decoded as Starlette decodes it (``parse_qsl``: ``%xx`` as UTF-8,
    ``+`` as a space), is a secret's: ``%74oken`` is ``token`` to the notifier."""
    return raw.lower() in _SECRET_PARAMETERS or unquote_plus(raw).lower() in _SECRET_PARAMETERS


def _redact_parameters(text: str) -> str:
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    for name in _PARAMETER_NAME.finditer(text):
        if name.start() < done or not _is_secret_name(name.group(1)):
            continue  # inside a value already masked, or no secret's name
        value = _PARAMETER_VALUE.match(text, name.end())
        if value is None:
            continue  # an empty value: nothing to hide
        parts.append(text[done : value.start()])
        parts.append(MASK)
        done = value.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def redact(text: str) -> str:
    """``text`` with every URL secret replaced by ``***``: the value of a ``token``,
    ``ticket`` or ``signature`` query parameter, however its name is spelled
    (``%74oken=``, ``Token=``), and the webhook secret of a ``/webhooks/runware/`` path."""
    if "=" in text:
        text = _redact_parameters(text)
    if "/webhooks/runware/" in text:
        text = _WEBHOOK_SECRET.sub(MASK, text)
    return text


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: redact every string value of a line (a stdlib line's text is
    its ``event``)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
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
