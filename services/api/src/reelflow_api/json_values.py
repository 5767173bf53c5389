"""A JSON body's size in values, not in bytes: whether a text holds more than a valid body of its
model can, counted without parsing it.

Parsing costs per value: 1 MiB of ``{"0":0,"1":0,…}`` or of ``[],[],…`` takes Python's
``json`` 35-55 ms, about a largest valid create's whole work, against 1-2 ms for that
create's 600 KB (long strings). So a body is measured by its separators,
the ``,`` and ``:`` outside its strings (one ``:`` per member, a ``,`` between members
and between array items), and one with more than any valid body of its route's model can
have is refused before it is parsed. The most is read from the model's own limits (its
fields, the ``max_length`` of its arrays): :func:`reelflow_common.client_json.most_separators`.
"""

from __future__ import annotations

import re

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
