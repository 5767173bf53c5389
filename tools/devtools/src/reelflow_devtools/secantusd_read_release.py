"""A fix to SecantusDB's server: an index fetch lets go of the document page it read.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. secantusdb 0.7.0b3 keeps one WiredTiger cursor per table per connection thread
and resets it only when the thread next uses it, so after a read the cursor stays
on the last document it read, and a positioned cursor holds a hazard pointer on
that document's page: WiredTiger cannot evict a page while any hazard pointer is
on it. ``findAndModify`` first reads its document (``Storage.find_matching``,
without the collection's lock), then waits for the collection's lock
(``Storage._coll_lock``) to update it. reelflow's hot path is one
``findAndModify`` per clip change on the project's document, so every writer
queued for that lock held a hazard pointer on the hot page while it waited. Once
WiredTiger marks the page for eviction, the writer holding the lock tries to
evict it on each access, fails on those hazard pointers and sleeps in its page-in
backoff, and every queued writer waits longer still. Measured with WiredTiger's
statistics in one ``python -m reelflow_devtools.bench --scenario throughput``
run: 27,444 forced evictions attempted, all blocked by hazard pointers on the
``projects`` documents table, 14.2 s of page-acquire sleep, and 45 clips/s at 50
scenes; with this fix, in two runs, 4 attempts each, no sleep, and 106 and 94
clips/s (docs/BENCHMARKS.md, "The embedded database"). Real MongoDB ends every
read's cursor positioning with the operation.

The fix: when ``Storage._docs_by_recordids`` (the fetch of documents an index
found, which a ``findAndModify``'s read and every indexed ``find`` go through)
has read its documents, the cursor it read them with is reset (a reset releases
the position and its hazard pointer; the cursor stays cached). That method
resets the same cursor before it reads, so no caller can have relied on its
position. Other cursors a read uses (the ``_id`` index's, the catalog's) keep
theirs; the measurement above found no eviction blocked on their pages. Should
the server's internals differ (another version), nothing changes and
:func:`install` says so.
"""

from __future__ import annotations

import contextlib
from typing import Any

PATCHED = "_reelflow_read_release"


def install() -> bool:
    """Reset the fetch's cursor once it has read; False if the internals differ."""
    try:
        from secantus import storage
    except ImportError:
        return False
    cls = storage.Storage
    original = getattr(cls, "_docs_by_recordids", None)
    table_for = getattr(storage, "_doc_table_for", None)
    engine_error = getattr(getattr(storage, "wt", None), "WiredTigerError", None)
    if original is None or table_for is None or engine_error is None:
        return False
    if getattr(original, PATCHED, False):
        return True

    def _docs_by_recordids(self: Any, db: str, coll: str, recordids: list[int]) -> Any:
        if not recordids:  # it reads nothing: no cursor of its own to release
            return original(self, db, coll, recordids)
        try:
            return original(self, db, coll, recordids)
        finally:
            cursor = getattr(self._tls, "cursors", {}).get((table_for(db, coll), True))
            if cursor is not None:
                release(cursor, engine_error)

    setattr(_docs_by_recordids, PATCHED, True)
    cls._docs_by_recordids = _docs_by_recordids
    return True


def release(cursor: Any, engine_error: type[Exception]) -> None:
    """Reset ``cursor``; one closed meanwhile (SWIG raises TypeError) holds nothing to release."""
    with contextlib.suppress(engine_error, TypeError):
        cursor.reset()
