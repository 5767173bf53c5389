"""Dollar amounts as reelflow shows them: rounded to a millionth of a dollar.

A project's cost is a sum of Runware's float prices kept by ``$inc`` (0.6 + 0.6 + 0.6
is 1.7999999999999998); every amount a client reads — usage, a project's ``cost``, a
clip's or an attempt's ``cost`` — is rounded here, once, as it is written out. Stored
sums stay as MongoDB added them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainSerializer

#: decimals of a dollar amount on the wire; far below any price Runware quotes
USD_DECIMALS = 6


def round_usd(usd: float) -> float:
    """``usd`` rounded as reelflow shows dollar amounts (never ``-0.0``: a sum rebuilt by
    subtraction may land a hair below zero)."""
    return round(usd, USD_DECIMALS) + 0.0


#: decimals a printed dollar amount shows at most: Runware quotes prices to four ($0.0013)
SHOWN_DECIMALS = 4


def format_usd(usd: float | None) -> str:
    """A dollar amount as the admin tool, the api's refusals and the CLI print it: cents always,
    up to SHOWN_DECIMALS decimals when they are not zero (``$5.00``, ``$23.234``, ``$0.0013``,
    ``$1,234.50``), ``-`` for none.

    The same as the ``reelflow`` CLI's ``render.money`` (which does not import this package).
    """
    if usd is None:
        return "-"
    whole, _, decimals = f"{usd:,.{SHOWN_DECIMALS}f}".partition(".")
    return f"${whole}.{decimals[:2]}{decimals[2:].rstrip('0')}"


#: a dollar amount, written out rounded (:func:`round_usd`); read and kept as it is
Usd = Annotated[float, PlainSerializer(round_usd, return_type=float)]
