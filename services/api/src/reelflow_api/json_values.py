"""A JSON body's size in values, not in bytes: what a valid body of a model can hold, and whether a
text holds more, counted without parsing it.

Parsing costs per value: 1 MiB of ``{"0":0,"1":0,…}`` or of ``[],[],…`` takes Python's
``json`` 35-55 ms, about a largest valid create's whole work, against 1-2 ms for that
create's 600 KB (long strings). So a body is measured by its separators,
the ``,`` and ``:`` outside its strings (one ``:`` per member, a ``,`` between members
and between array items), and one with more than any valid body of its route's model can
have is refused before it is parsed. The most is read from the model's own limits (its
fields, the ``max_length`` of its arrays): :func:`most_separators`.
"""

from __future__ import annotations

import functools
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel

#: what lies up to the next separator outside the strings, and that separator (none at the
#: end). Possessive (``*+``, ``++``): nothing consumed is tried again, and every part always
#: matches (a string that is never closed runs to the end), so the scan is linear. A string
#: pattern that could fail made it quadratic: from each quote of ``"\"\"\"…``, whose later
#: quotes are all escaped, it scanned to the end and failed; 1 MiB of it took about an hour.
_UP_TO_A_SEPARATOR = re.compile(
    rb"""
    (?:
        "[^"\\]*+ (?:\\.[^"\\]*+)*+ (?:"|\\?\Z)  # a string, escapes and all, or its rest
      | [^",:]++                                   # anything else but a separator
    )*+
    (?P<separator>[,:])?
    """,
    re.DOTALL | re.VERBOSE,
)
_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def most_separators(model: type[BaseModel]) -> int | None:
    """The most separators a valid JSON object of ``model`` holds (a member given twice counts
    twice); None when nothing bounds it (an array without a ``max_length``, a mapping)."""
    fields = model.model_fields.values()
    total = max(len(fields) - 1, 0)  # the commas between members
    for field in fields:
        in_value = _most_in_value(field.annotation, field.metadata)
        if in_value is None:
            return None
        total += 1 + in_value  # its ":" and what its value holds
    return total


def _most_in_value(annotation: Any, metadata: list[Any]) -> int | None:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        each = [_most_in_value(arg, metadata) for arg in get_args(annotation)]
        return None if None in each else max(n for n in each if n is not None)
    if origin is Literal or annotation in _SCALARS:
        return 0
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return most_separators(annotation)
    if origin is list:
        most_items = next(
            (rule.max_length for rule in metadata if isinstance(rule, annotated_types.MaxLen)),
            None,
        )
        in_item = _most_in_value(get_args(annotation)[0], [])
        if most_items is None or in_item is None:
            return None
        return most_items * in_item + max(most_items - 1, 0)
    return None


def more_separators_than(text: bytes, most: int) -> bool:
    """Whether the JSON ``text`` holds more than ``most`` separators outside its strings.

    Counting all of them is a quick upper bound (bytes.count); only past ``most`` are
    the strings told apart, in one pass that stops at the ``most + 1``-th separator.
    """
    if text.count(b",") + text.count(b":") <= most:
        return False
    found = 0
    for part in _UP_TO_A_SEPARATOR.finditer(text):
        if part["separator"] is not None:
            found += 1
            if found > most:
                return True
    return False
