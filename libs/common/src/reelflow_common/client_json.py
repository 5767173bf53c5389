"""What a client sends as JSON (an api request body, a WebSocket message) is read by one rule, and
a value of another JSON type than its field's is refused in the same words everywhere."""

from __future__ import annotations

import functools
import itertools
import math
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

#: what ``json.loads`` makes of a JSON scalar, which a strict field takes as it is
JSON_SCALARS = (str, int, float, bool, type(None))

#: pydantic's error types for a value that should have been an object
OBJECT_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type"})
#: pydantic's error types for a value of another JSON type than its field's, and the type it must be
_MUST_BE = {
    "float_type": "a number",
    "int_type": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "an array",
    **dict.fromkeys(OBJECT_TYPES, "a JSON object"),
}
#: unknown members an object with too many names in its one error, and the characters shown of each
_NAMED_UNKNOWN = 3
_NAME_CHARS = 40


class ClientJson(BaseModel):
    """A JSON document a client sends: every field takes its JSON type only, and an unknown field
    is refused.

    Strict: a number is a JSON number, never a string (``"6"``) or ``true``, as
    pydantic's lax mode took them (query parameters, strings by nature, stay lax).
    An integer may be written with a zero fraction (``1280.0``): JSON Schema's
    ``integer`` (the contracts' in ``docs/``) is any number without a fractional part.

    So a field takes one of JSON's own types (str, int, float, bool, None, a Literal of
    those, another ClientJson, a list of them with a ``max_length``): FastAPI validates a
    body as the Python objects ``json.loads`` made, and strict mode would refuse the
    string a client sends for an Enum, datetime or UUID field. :func:`most_separators`
    walks the fields by that rule, and refuses any other type.

    An object with more members than the model has fields has unknown ones: it is
    refused whole, in one error, before any member is looked at. Each unknown member
    would be an error of its own, and a client's 110,000 of them (a 1 MiB body) cost
    the API over a second of CPU to list; with no more members than fields, each
    unknown one is named where it is.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _read_as_client_json(cls, data: Any) -> Any:
        # On the model, not on "*" fields: a discriminator field may have no validator.
        if not isinstance(data, dict):
            return data
        if len(data) > len(cls.model_fields):
            raise _too_many_members(data, list(cls.model_fields))
        # A float field takes the int in strict mode too; 6.5 stays a float (refused for an int).
        return {
            name: int(value) if isinstance(value, float) and value.is_integer() else value
            for name, value in data.items()
        }


@functools.cache
def most_separators(model: type[BaseModel]) -> int:
    """The most ``,`` and ``:`` a valid JSON object of ``model`` holds (a member given twice
    counts twice): a ``:`` per member, a ``,`` between members and between array items.

    The rule for a :class:`ClientJson` field's type, too: one of JSON's own, holding a
    bounded number of values. Anything else raises TypeError naming the field: an Enum,
    a datetime (strict mode refuses what a client sends for them), a dict, ``Any`` or a
    list without a ``max_length`` (nothing bounds the values they hold, and the api
    refuses a body with more than this before parsing it: :mod:`reelflow_api.json_values`).
    """
    fields = model.model_fields
    total = max(len(fields) - 1, 0)  # the commas between members
    for name, field in fields.items():
        try:
            in_value = _most_in_value(field.annotation, field.metadata)
        except TypeError as exc:
            raise TypeError(f"{model.__name__}.{name}: {exc}") from None
        total += 1 + in_value  # its ":" and what its value holds
    return total


def _most_in_value(annotation: Any, metadata: Iterable[Any]) -> int:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _most_in_value(args[0], [*metadata, *_rules(args[1:])])
    if origin in (Union, types.UnionType):
        return max(_most_in_value(arg, metadata) for arg in args)
    if origin is Literal:
        foreign = [value for value in args if type(value) not in JSON_SCALARS]
        if foreign:
            raise TypeError(f"a Literal of {foreign!r}, which are no JSON values")
        return 0
    if annotation in JSON_SCALARS:
        return 0
    if isinstance(annotation, type) and issubclass(annotation, ClientJson):
        return most_separators(annotation)
    if origin is list:
        # annotated_types.MaxLen (or Len), which pydantic makes of a max_length
        lengths: list[int] = [
            rule.max_length for rule in metadata if getattr(rule, "max_length", None) is not None
        ]
        if not lengths:
            raise TypeError(f"{annotation!r} without a max_length")
        most_items = min(lengths)
        return most_items * _most_in_value(args[0], []) + max(most_items - 1, 0)
    raise TypeError(
        f"{annotation!r}: not str, int, float, bool, None, a Literal of those, a ClientJson"
        " model, or a list of them with a max_length"
    )


def _rules(annotated: Iterable[Any]) -> Iterator[Any]:
    """The constraints of an ``Annotated``: pydantic's ``Field(...)`` holds its own."""
    for rule in annotated:
        if isinstance(rule, FieldInfo):
            yield from rule.metadata
        else:
            yield rule


def _too_many_members(data: dict[str, Any], fields: list[str]) -> PydanticCustomError:
    """``3 unknown fields ('colour', 'size', 'speed'); the fields are prompt, …``: the first few
    named, each cut short (a name may be as long as the body)."""
    unknown = len(data) - sum(name in data for name in fields)
    named = itertools.islice((name for name in data if name not in fields), _NAMED_UNKNOWN)
    shown = ", ".join(repr(_cut(name)) for name in named)
    more = ", …" if unknown > _NAMED_UNKNOWN else ""
    msg = f"{unknown} unknown fields ({shown}{more}); the fields are {', '.join(fields)}"
    # The text as the template, with no context: a name with braces in it stays as it is.
    return PydanticCustomError("too_many_fields", msg)


def _cut(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else f"{name[:_NAME_CHARS]}…"


def wrong_type(error: Mapping[str, Any]) -> str | None:
    """``must be a number, not a string`` for a pydantic error about a value of another JSON type
    than its field's; None for any other error."""
    must_be = _MUST_BE.get(str(error.get("type")))
    return None if must_be is None else f"must be {must_be}, not {json_kind(error.get('input'))}"


def json_kind(value: Any) -> str:
    """What a JSON value is, as a person says it: ``a string``, ``true or false``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or an infinite number"
    if isinstance(value, float) and not value.is_integer():
        return "a number with a fraction"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__
