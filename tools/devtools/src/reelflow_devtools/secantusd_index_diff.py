"""A fix to SecantusDB's server: an update rewrites only the index entries whose keys changed.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. For each document a single-transaction update (``findAndModify``, ``update_one``:
``Storage._update_matching_single_txn``) changes, secantusdb 0.7.0b3 checks the new
document against every unique index (``_unique_conflict``), deletes the entries the
old document put in every index (``_delete_index_entries``) and writes the new
document's into every index (``_write_index_entries``), each of the three reading
the index catalog again (``_index_options_map``), whatever the update changed.
reelflow's hot path is one ``findAndModify`` per clip change on the project's
document, and it rarely changes a field of the five ``projects`` indexes. ``py-spy
record --gil`` of the server during ``python -m reelflow_devtools.bench --scenario
throughput``: 66 % of its samples in that method, 26 % of all of them in those
three and the geo pre-flight (``_validate_geo_indexes``, which reads the catalog
too though ``projects`` has no geo index). MongoDB touches only the index keys
that changed.

The fix, for the updates that method makes:

- the keys the old and the new document give each index are computed with the
  server's own functions (partial filter: ``matches``; keys: ``_index_key_variants``
  with the index's sparseness and collation, what the delete and the write use);
  an index whose keys, and membership of a partial index, are the same in both
  is left out of the unique check, the delete and the write. Deleting then
  writing the same entries (and releasing then reclaiming the same unique keys)
  leaves the tables as they were, and on such an index the unique check could
  only find a key another document already holds, which a unique index does not
  let happen. Geo indexes (keys from cells and options) and ``prepareUnique``
  ones (their check also meets the duplicates that existed before) are always
  rewritten, as is every index when a key cannot be computed (the server's own
  path then raises what it raises);
- the geo pre-flight returns at once when none of the indexes it is given is a
  geo index (it would read the catalog and check nothing).

The old and the new document are paired by identity: the update records what
``apply_update`` returned for which document; only a unique check of that result
(with the document's RecordId), then the delete of that document's entries and
the write of the result's under the same RecordId, in this order, use the
decision. Anything else (an upsert's insert, the chunked multi-update path) runs
as before. Should the server's internals differ (another version), nothing
changes and :func:`install` says so.
"""

from __future__ import annotations

import threading
from typing import Any

PATCHED = "_reelflow_index_diff"
#: the methods this fix wraps, and the server functions it computes keys with
_METHODS = (
    "_update_matching_single_txn",
    "_unique_conflict",
    "_delete_index_entries",
    "_write_index_entries",
    "_validate_geo_indexes",
    "_index_options_map",
    "_partial_filters",
)
_FUNCTIONS = (
    "apply_update",
    "matches",
    "_index_key_variants",
    "_geo_type_of",
    "_parse_index_collation",
)

#: index entry as the server lists them: (name, key spec, sparse, unique)
Index = tuple[str, dict[str, Any], bool, bool]

_current = threading.local()


class _Update:
    """What one update call decided about the document it is rewriting."""

    __slots__ = ("deleted", "new", "old", "recordid", "unchanged")

    def __init__(self) -> None:
        self.old: Any = None
        self.new: Any = None
        self.recordid: int | None = None
        #: the indexes to leave alone; None: nothing decided for this pair
        self.unchanged: frozenset[str] | None = None
        self.deleted = False


def _update() -> _Update | None:
    return getattr(_current, "update", None)


def install() -> bool:
    """Patch the server's update path; False (nothing changed) if its internals differ."""
    try:
        from secantus import storage
    except ImportError:
        return False
    cls = storage.Storage
    if not all(hasattr(cls, name) for name in _METHODS) or not all(
        hasattr(storage, name) for name in _FUNCTIONS
    ):
        return False
    if getattr(cls._update_matching_single_txn, PATCHED, False):
        return True
    keys = _Keys(storage)
    patches = {
        "_update_matching_single_txn": _scoped(cls._update_matching_single_txn),
        "_unique_conflict": _checking(cls._unique_conflict, keys),
        "_delete_index_entries": _rewriting(cls._delete_index_entries, deletes=True),
        "_write_index_entries": _rewriting(cls._write_index_entries, deletes=False),
        "_validate_geo_indexes": _geo_only(cls._validate_geo_indexes, keys),
    }
    for name, patched in patches.items():
        setattr(patched, PATCHED, True)
        setattr(cls, name, patched)
    if not getattr(storage.apply_update, PATCHED, False):
        storage.apply_update = _recording(storage.apply_update)
    return True


class _Keys:
    """The server's own key functions, and which indexes an update leaves unchanged."""

    def __init__(self, storage: Any) -> None:
        self.matches = storage.matches
        self.key_variants = storage._index_key_variants
        self.geo_type_of = storage._geo_type_of
        self.parse_collation = storage._parse_index_collation

    def is_geo(self, index: Index) -> bool:
        return self.geo_type_of(index[1]) is not None

    def unchanged(
        self,
        store: Any,
        db: str,
        coll: str,
        old: Any,
        new: Any,
        indexes: list[Index],
        partials: Any,
    ) -> frozenset[str]:
        """The indexes whose entries (and unique keys) ``old`` and ``new`` give alike."""
        if partials is None:
            partials = store._partial_filters(db, coll)
        options = store._index_options_map(db, coll)
        same = set()
        for index in indexes:
            opts = options.get(index[0], {})
            if self.is_geo(index) or opts.get("prepareUnique"):
                continue
            try:
                if self._entries(old, index, partials, opts) == self._entries(
                    new, index, partials, opts
                ):
                    same.add(index[0])
            except Exception:  # noqa: S112 -- left to the server's path, which raises what it raises
                continue
        return frozenset(same)

    def _entries(self, doc: Any, index: Index, partials: Any, opts: Any) -> list[bytes] | None:
        """The keys ``doc`` gives ``index``; None: outside its partial filter."""
        name, key_spec, sparse, _unique = index
        partial = partials.get(name)
        if partial is not None and not self.matches(doc, partial):
            return None
        collation = self.parse_collation(opts.get("collation"))
        keys: list[bytes] = self.key_variants(doc, key_spec, sparse=sparse, collation=collation)
        return keys


def _changed(indexes: list[Index], unchanged: frozenset[str]) -> list[Index]:
    return [index for index in indexes if index[0] not in unchanged]


def _scoped(original: Any) -> Any:
    def _update_matching_single_txn(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = _update()
        _current.update = _Update()
        try:
            return original(self, *args, **kwargs)
        finally:
            _current.update = outer

    return _update_matching_single_txn


def _recording(original: Any) -> Any:
    def apply_update(doc: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(doc, update, *args, **kwargs)
        current = _update()
        if current is not None:
            current.old, current.new = doc, result
            current.recordid, current.unchanged, current.deleted = None, None, False
        return result

    setattr(apply_update, PATCHED, True)
    return apply_update


def _checking(original: Any, keys: _Keys) -> Any:
    def _unique_conflict(
        self: Any,
        db: str,
        coll: str,
        candidate_doc: Any,
        indexes: list[Index],
        *,
        exclude_recordid: int | None,
        partials: Any = None,
    ) -> Any:
        current = _update()
        if (
            current is not None
            and indexes
            and exclude_recordid is not None
            and candidate_doc is current.new
            and current.new is not current.old
        ):
            if partials is None:
                partials = self._partial_filters(db, coll)
            current.unchanged = keys.unchanged(
                self, db, coll, current.old, current.new, indexes, partials
            )
            current.recordid, current.deleted = exclude_recordid, False
            indexes = _changed(indexes, current.unchanged)
        return original(
            self,
            db,
            coll,
            candidate_doc,
            indexes,
            exclude_recordid=exclude_recordid,
            partials=partials,
        )

    return _unique_conflict


def _rewriting(original: Any, *, deletes: bool) -> Any:
    """The delete (``deletes``) or the write of one document's index entries.

    The write of the pair's new document leaves out what the delete of its old
    one left out, and only after that delete: the entries stay as they were.
    """

    def rewrite(
        self: Any,
        db: str,
        coll: str,
        doc: Any,
        indexes: list[Index],
        partials: Any = None,
        *,
        recordid: int,
    ) -> None:
        current = _update()
        if (
            current is not None
            and current.unchanged is not None
            and recordid == current.recordid
            and (doc is current.old if deletes else current.deleted and doc is current.new)
        ):
            indexes = _changed(indexes, current.unchanged)
            current.deleted = deletes
            if not deletes:  # the pair is done
                current.unchanged = None
        original(self, db, coll, doc, indexes, partials, recordid=recordid)

    rewrite.__name__ = original.__name__
    return rewrite


def _geo_only(original: Any, keys: _Keys) -> Any:
    def _validate_geo_indexes(
        self: Any, db: str, coll: str, doc: Any, indexes: list[Index], partials: Any = None
    ) -> None:
        if any(keys.is_geo(index) for index in indexes):
            original(self, db, coll, doc, indexes, partials)

    return _validate_geo_indexes
