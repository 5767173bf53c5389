"""A fix to SecantusDB's server: a one-sided range on an index scans only its bound's type.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. A query such as ``{attempts_due_at: {$lt: now}}`` (the reconciler's, every
``reconcile_interval_s`` on every poller replica) has an upper bound and no lower
one, and secantusdb 0.7.0b3 scans its single-field index from the first entry:
every document *without* the field (indexed as null, which sorts before every
date) is read, BSON-decoded and matched, only to be dropped. Measured in the
benchmark: with about 9,400 projects, of which a handful have the field, that
query took 157-330 ms of the server (``system.profile``, slow operations), and
the poller's write of a clip's end that queued behind it was delayed as long
(the notifier scenario's "change -> out of broker" p99 of 234-273 ms in the
full runs, 43-77 ms with a small database). Real MongoDB brackets a comparison
by type: ``$lt`` a date matches only dates, so its index bounds start at the
first date.

The fix: for a single-field ascending index and a filter of one ``$lt``,
``$lte``, ``$gt`` or ``$gte`` whose bound is a number, string, ObjectId,
boolean, date or timestamp, the missing side of the range is the edge of the
bound's type in the index's key order (a key starts with its type's rank, one
byte). Only documents of other types are left out, which such a comparison
never matches; every caller applies the whole filter to each candidate
afterwards, so results are the same (the tests compare them with the stock
server's on values of every type). Other bounds (null, MinKey, MaxKey, arrays,
documents: their comparisons cross types) and other indexes go to the server's
own code. Should the server's internals differ (another version), nothing
changes and :func:`install` says so.
"""

from __future__ import annotations

from typing import Any

PATCHED = "_reelflow_range_bracket"
_UPPER = frozenset({"$lt", "$lte"})
_LOWER = frozenset({"$gt", "$gte"})
#: the types whose comparisons match only their own type (``sortkey.RANK_<name>``)
_TYPES = ("NUMBER", "STRING", "OBJECTID", "BOOL", "DATE", "TIMESTAMP")


def install() -> bool:
    """Patch the server's index range lookup; False (nothing changed) if its internals differ."""
    try:
        from secantus import sortkey, storage
    except ImportError:
        return False
    cls = storage.Storage
    original = getattr(cls, "_lookup_id_keys_via_leading_field", None)
    encode = getattr(sortkey, "encode_value", None)
    ranks = [getattr(sortkey, f"RANK_{name}", None) for name in _TYPES]
    if original is None or encode is None or None in ranks or not hasattr(cls, "_range_scan_index"):
        return False
    if getattr(original, PATCHED, False):
        return True
    bracketed = frozenset(ranks)

    def _lookup_id_keys_via_leading_field(
        self: Any,
        db: str,
        coll: str,
        idx_match: tuple[str, int, bool],
        value: Any,
        *,
        collation: Any = None,
    ) -> Any:
        name, direction, is_compound = idx_match
        if not is_compound and direction == 1 and isinstance(value, dict) and len(value) == 1:
            ((op, bound),) = value.items()
            if op in _UPPER | _LOWER and not isinstance(bound, dict | list):
                key = encode(bound, collation=collation)
                rank = key[0]
                if rank in bracketed:
                    type_start, type_end = bytes([rank]), bytes([rank + 1])
                    if op in _UPPER:
                        return self._range_scan_index(
                            db, coll, name, type_start, True, key, op == "$lte"
                        )
                    return self._range_scan_index(
                        db, coll, name, key, op == "$gte", type_end, False
                    )
        return original(self, db, coll, idx_match, value, collation=collation)

    setattr(_lookup_id_keys_via_leading_field, PATCHED, True)
    cls._lookup_id_keys_via_leading_field = _lookup_id_keys_via_leading_field
    return True
