"""Validation errors in words a person can act on, where pydantic's own say neither what is
wrong nor how to fix it: a regular expression, a body that is no JSON object, a value of
another JSON type than its field's, a character offset that reads like a field's path."""

from __future__ import annotations

import email.message
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelflow_common.client_json import OBJECT_TYPES, json_kind, wrong_type
from reelflow_common.runware.catalogue import AIR_ID_PATTERN

_SEND_JSON = "send a JSON object with Content-Type: application/json"


@dataclass(frozen=True)
class TextFormat:
    """A string parameter's format: the pattern it is checked with, and how a person says it."""

    pattern: str
    #: what the value is, e.g. "a UTC month as YYYY-MM (1970-01 to 2999-12)"
    name: str
    example: str

    @property
    def description(self) -> str:
        """The parameter's description (OpenAPI) and what a value that does not match hears."""
        return f"{self.name}, such as {self.example}"


AIR_ID = TextFormat(
    pattern=AIR_ID_PATTERN,
    name="a Runware AIR id (provider:model@version)",
    example="google:3@3",
)
UTC_MONTH = TextFormat(
    pattern=r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$",
    name="a UTC month as YYYY-MM (1970-01 to 2999-12)",
    example="2026-12",
)
#: every pattern a request parameter is checked with, and how it is said
FORMATS = {text_format.pattern: text_format for text_format in (AIR_ID, UTC_MONTH)}


def said(
    errors: Sequence[dict[str, Any]], *, content_type: str | None, body: Any
) -> list[dict[str, Any]]:
    """``errors`` (pydantic's, through FastAPI) as problem+json's ``errors``: ``loc`` and ``msg``.

    ``body`` is the request's text for a JSON syntax error (FastAPI keeps it)."""
    return [_said(error, content_type=content_type, body=body) for error in errors]


def _said(error: dict[str, Any], *, content_type: str | None, body: Any) -> dict[str, Any]:
    loc, kind, ctx = list(error["loc"]), error.get("type"), error.get("ctx") or {}
    if kind == "json_invalid":
        return {"loc": ["body"], "msg": _not_json(ctx.get("error"), loc, body)}
    if loc == ["body"] and kind in OBJECT_TYPES:
        return {"loc": loc, "msg": _not_an_object(error.get("input"), content_type)}
    if loc == ["body"] and kind == "missing":
        return {"loc": loc, "msg": f"missing: {_SEND_JSON}"}
    if loc[:1] == ["body"] and (msg := wrong_type(error)):
        return {"loc": loc, "msg": msg}
    if kind == "string_pattern_mismatch" and (known := FORMATS.get(str(ctx.get("pattern")))):
        return {"loc": loc, "msg": f"should be {known.description}"}
    return {"loc": loc, "msg": without_value_error(error)}


def without_value_error(error: Mapping[str, Any]) -> str:
    """pydantic's ``msg``, without the ``Value error, `` it puts before a validator's own
    ``ValueError`` (``must have at least 2 characters besides whitespace``): the message is
    the validator's, said to a person."""
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ") if error.get("type") == "value_error" else msg


def _not_json(why: object, loc: list[Any], body: Any) -> str:
    """``not valid JSON: expecting value at line 1 column 27``: a position a person can find."""
    # Python's json says "Invalid control character at", and then where: said once, below.
    what = str(why or "a syntax error").removesuffix(" at")
    offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if offset is None or not isinstance(body, str):
        return f"not valid JSON: {what[:1].lower()}{what[1:]}"
    line = body.count("\n", 0, offset) + 1
    column = offset - body.rfind("\n", 0, offset)
    return f"not valid JSON: {what[:1].lower()}{what[1:]} at line {line} column {column}"


def _not_an_object(value: Any, content_type: str | None) -> str:
    if not reads_as_json(content_type):
        sent = f"sent as {content_type}" if content_type else "sent without a Content-Type"
        return f"not read as JSON ({sent}): {_SEND_JSON}"
    return f"must be a JSON object, not {json_kind(value)}"


def reads_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON (``application/json``,
    ``application/*+json``)."""
    if not content_type:
        return False
    header = email.message.Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
