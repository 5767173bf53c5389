"""A fix to SecantusDB's server: a write transaction reads the index catalog once.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. secantusdb 0.7.0b3 keeps its index catalog in a WiredTiger table
(``secantus_indexes``) and every question about a collection's indexes walks it
again (``Storage._iter_indexes``: a cursor positioned on the collection's prefix,
then every row read and BSON-decoded). One ``findAndModify`` asks seven times
or more: the update lists the indexes, their partial filters and the multikey ones
(``_all_indexes``, ``_partial_filters``, ``_multikey_index_names``), and each of
the unique check, the delete and the write of index entries (and the index-diff
fix's key comparison) reads the options of every index (``_index_options_map``);
planning an index for the write's filter asks again. ``py-spy record --gil`` of
the server under ``python -m reelflow_devtools.store_cost`` (with the fixes
before this one): 17 % of its samples in ``_iter_indexes``. MongoDB keeps its catalog in memory.

The fix. Inside a write transaction (``Storage._batch_transaction``, outside a
user's multi-document transaction) the first walk of a collection's catalog is
kept, and later ones in the same transaction are answered from it. The
transaction reads a snapshot (WiredTiger's default isolation), so another
thread's catalog change was invisible to those walks anyway; this thread's own
changes are not: every method that writes the catalog (``create_index``,
``drop_index``, ``drop_all_indexes``, ``set_index_expiry``, ``set_index_options``,
``drop_collection``, ``drop_database``, ``rename_collection``, the recovery of
pending drops, and ``_maybe_mark_multikey`` when it flags an index) bumps a
counter, and a kept walk older than the counter is read again. :func:`install`
checks that no other method of the server names the catalog table; should the
server's internals differ (another version), nothing changes and it says so.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

PATCHED = "_reelflow_index_catalog"
#: the methods that write the catalog table
WRITERS = (
    "create_index",
    "drop_index",
    "drop_all_indexes",
    "set_index_expiry",
    "set_index_options",
    "drop_collection",
    "drop_database",
    "rename_collection",
    "_recover_pending_drops_locked",
)
#: every method that names the catalog table: the writers, the multikey flag,
#: the reader this fix wraps, and two that only open or describe the table
_TOUCHING = frozenset({*WRITERS, "_maybe_mark_multikey", "_iter_indexes", "__init__", "_table_kf"})

#: catalog row as the server yields them: (index name, key spec, options)
Row = tuple[str, dict[str, Any], dict[str, Any]]


class _Catalog:
    """How many catalog writes this process has seen; a kept walk is as old as its count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0

    def changed(self) -> None:
        with self._lock:
            self.version += 1


_catalog = _Catalog()
#: this thread's kept walks, by (storage, db, collection); None outside a write transaction
_current = threading.local()


def _kept() -> dict[tuple[int, str, str], tuple[int, list[Row]]] | None:
    return getattr(_current, "kept", None)


def install() -> bool:
    """Patch the catalog reads and writes; False (nothing changed) if the internals differ."""
    try:
        from secantus import storage
    except ImportError:
        return False
    cls = storage.Storage
    table = getattr(storage, "_IDX_TABLE", None)
    if table is None or not hasattr(cls, "_batch_transaction"):
        return False
    if getattr(cls._iter_indexes, PATCHED, False):
        return True
    if not methods_naming(cls, "_IDX_TABLE") <= _TOUCHING or not all(
        hasattr(cls, name) for name in (*WRITERS, "_maybe_mark_multikey")
    ):
        return False
    patches = {
        "_iter_indexes": _keeping(cls._iter_indexes),
        "_batch_transaction": _scoped(cls._batch_transaction),
        "_maybe_mark_multikey": _marking(cls._maybe_mark_multikey),
        **{name: _writing(getattr(cls, name)) for name in WRITERS},
    }
    for name, patched in patches.items():
        setattr(patched, PATCHED, True)
        setattr(cls, name, patched)
    return True


def methods_naming(cls: type, name: str) -> frozenset[str]:
    """The methods of ``cls`` whose source names ``name`` (how a fix learns who touches a table)."""
    found = set()
    for attr, function in inspect.getmembers(cls, inspect.isfunction):
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        if name in source:
            found.add(attr)
    return frozenset(found)


def _scoped(original: Any) -> Any:
    """The write transaction, with a place for this thread's kept walks while it runs."""

    @contextlib.contextmanager
    def _batch_transaction(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with original(self, *args, **kwargs) as session:
            if getattr(self._tls, "user_txn", None) is not None:
                yield session
                return
            outer = _kept()
            _current.kept = {}
            try:
                yield session
            finally:
                _current.kept = outer

    return _batch_transaction


def _keeping(original: Any) -> Any:
    def _iter_indexes(self: Any, db: str, coll: str) -> Iterator[Row]:
        kept = _kept()
        if kept is None:
            return original(self, db, coll)  # type: ignore[no-any-return]
        key = (id(self), db, coll)
        version = _catalog.version
        found = kept.get(key)
        if found is None or found[0] != version:
            found = (version, list(original(self, db, coll)))
            kept[key] = found
        return iter(found[1])

    return _iter_indexes


def _writing(original: Any) -> Any:
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        _catalog.changed()
        try:
            return original(self, *args, **kwargs)
        finally:
            _catalog.changed()

    write.__name__ = original.__name__
    return write


def _marking(original: Any) -> Any:
    def _maybe_mark_multikey(
        self: Any, db: str, coll: str, doc: Any, indexes: Any, already_multikey: set[str]
    ) -> set[str]:
        before = len(already_multikey)
        result: set[str] = original(self, db, coll, doc, indexes, already_multikey)
        # grown: an index flagged now, or found flagged already (a walk kept
        # before another thread's flag): either way the next walk reads again
        if len(result) != before:
            _catalog.changed()
        return result

    return _maybe_mark_multikey
