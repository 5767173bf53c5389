"""A fix to SecantusDB's server: a write finds the document its filter names by ``_id``.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. ``findAndModify`` in secantusdb 0.7.0b3 first finds the document with the
query (an ``_id`` point lookup), then updates it with the filter
``{_id: <found>, $and: [<query>]}``, so that a concurrent writer's change makes
the write miss. Its write path plans an ``_id`` point lookup only for a filter
that is ``_id`` and nothing else (``Storage._try_index_id_keys``); any other
filter with a ``$`` key scans the collection, reading and BSON-decoding every
document. Every ``findAndModify`` (and ``update_one`` with ``_id`` and a guard)
then costs the server time in proportion to the number and size of the documents
in the collection: measured on this machine, 1.7 ms per ``findAndModify`` by
``_id`` in a collection of 10 documents, 12 ms with 1,000 and 22 ms with 2,000.
reelflow's hot path is one guarded ``findAndModify`` per clip change, and
``projects`` keeps every project, so that scan was most of the database's CPU
(72-78 % of it in the throughput benchmark) and grew with every project ever made.
Real MongoDB plans ``_id`` equality as a point lookup whatever else the filter says.

The fix: when the top level of a filter has an ``_id`` equality (``x``, ``$eq``,
``$in``, as the server's own ``_id`` fast path accepts) and no collation applies,
the candidates are the documents with those ``_id`` values. Every caller of
``_try_index_id_keys`` applies the whole filter to each candidate afterwards
(its contract: index lookups may return false positives), and the top-level
clauses of a filter are ANDed, so a document that matches must be among them:
the results are the same, only the scan is gone. Should the server's internals
differ (another version), nothing changes and :func:`install` says so.
"""

from __future__ import annotations

from typing import Any

PATCHED = "_reelflow_point_lookup"
#: top-level operators the server plans on paths of their own: left to it
_OWN_PATHS = frozenset({"$near", "$nearSphere", "$geoNear", "$text"})


def install() -> bool:
    """Patch the server's write-path planner; False (nothing changed) if its internals differ."""
    try:
        from secantus import storage
    except ImportError:
        return False
    cls = storage.Storage
    original = getattr(cls, "_try_index_id_keys", None)
    point_keys = getattr(storage, "_id_point_lookup_keys", None)
    needed = ("_is_timeseries", "_doc_recordid")
    if original is None or point_keys is None or not all(hasattr(cls, name) for name in needed):
        return False
    if getattr(original, PATCHED, False):
        return True

    def _try_index_id_keys(
        self: Any, db: str, coll: str, filter: Any, *, collation: Any = None
    ) -> list[Any] | None:
        if (
            collation is None
            and isinstance(filter, dict)
            and len(filter) > 1
            and "_id" in filter
            and not _OWN_PATHS.intersection(filter)
            and not self._is_timeseries(db, coll)
        ):
            keys = point_keys(filter["_id"])
            if keys is not None:
                found = [self._doc_recordid(db, coll, key) for key in keys]
                return [recordid for recordid in found if recordid is not None]
        result: list[Any] | None = original(self, db, coll, filter, collation=collation)
        return result

    setattr(_try_index_id_keys, PATCHED, True)
    cls._try_index_id_keys = _try_index_id_keys
    return True
