"""JSON text is UTF-8 (RFC 8259, section 8.1): a body in another encoding is refused before
anything reads it.

Python's ``json.loads`` of bytes (Starlette's ``Request.json``, the webhook route) also
reads UTF-16 and UTF-32, told by a byte order mark or by NUL bytes among the first four.
The checks that read a body's raw bytes before it is parsed (the value count of
:mod:`reelflow_api.json_values`, the lone surrogate escape) take them as UTF-8, and see
nothing in such a body: 1 MiB of UTF-16 unknown members, or a ``\\ud800`` escape, passed
them. So a body that ``json`` would read as anything but UTF-8, or a JSON body whose
``Content-Type`` names another charset, is refused first. A UTF-8 byte order mark is
read past, as RFC 8259 allows and ``json`` does: it changes none of the bytes the checks count.
"""

from __future__ import annotations

import codecs
import email.message
import json

#: what ``json.detect_encoding`` calls UTF-8 text: with and without a byte order mark
_READ_AS_UTF8 = frozenset({"utf-8", "utf-8-sig"})
#: the charsets a JSON body may name: UTF-8, and ASCII (which is UTF-8), by codec name
_UTF8_CHARSETS = frozenset({"utf-8", "ascii"})
_SEND_UTF8 = "send JSON text encoded as UTF-8 (RFC 8259)"


def not_utf8(body: bytes) -> str | None:
    """Why ``json`` would not read ``body`` as UTF-8, if it would not."""
    # The very test json.loads makes: what it decides is what the checks must agree with.
    encoding = json.detect_encoding(body)
    if encoding in _READ_AS_UTF8:
        return None
    return (
        f"not UTF-8: its first bytes (a byte order mark, or NUL bytes) make it"
        f" {encoding.upper()}; {_SEND_UTF8}"
    )


def charset_not_utf8(content_type: str | None) -> str | None:
    """Why a ``Content-Type`` names a charset other than UTF-8, if it does (none is fine)."""
    if not content_type:
        return None
    header = email.message.Message()
    header["content-type"] = content_type
    charset = header.get_content_charset()
    if charset is None or _codec_name(charset) in _UTF8_CHARSETS:
        return None
    return f"sent as charset={charset}; {_SEND_UTF8}, with no charset or charset=utf-8"


def _codec_name(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None
