"""A fix to SecantusDB's server: a command learns the profiling level without the server's lock.

Installed by :mod:`reelflow_devtools.secantusd`, the server the dev and test database runs.

Why. After every command, secantusdb 0.7.0b3's dispatch asks whether to record it
in ``system.profile`` (``commands._maybe_record_profile``), which asks
``Storage.get_profile``: that takes the server's global lock (``Storage._lock``,
the one every catalog and index operation holds), opens the thread's cursor on
the settings table (``secantus_profile_settings``) and looks the database up, to
learn, in every run of reelflow's, that profiling is off. py-spy of the server
under ``python -m reelflow_devtools.store_cost`` (one-scene projects) found it in
12-15 % of the server's samples: 2-3 % reading the table, the rest commands
waiting for the lock. MongoDB keeps a database's profiling level in memory.

The fix. ``Storage.get_profile`` answers from the settings it keeps per database
(per server), read from the table the first time a database is asked about.
``Storage.set_profile`` (the ``profile`` command's; the admin UI sends that too)
writes the table, then keeps what it wrote, read back with the server's own
``get_profile``, both under the server's lock: the kept settings follow the
table's writes in their order, and a first read that raced a write never
replaces the write's (it only fills a database nothing was kept for). A level
set takes effect at the next command, as before. :func:`install` checks that no
other method of the server names the settings table (the ``profile`` command is
refused in a transaction, so no write of it is rolled back); should the server's
internals differ (another version), nothing changes and it says so.
"""

from __future__ import annotations

from typing import Any

from reelflow_devtools.secantusd_index_catalog import methods_naming

PATCHED = "_reelflow_profile_level"
#: where a server keeps its settings, by database (an attribute of the ``Storage``)
KEPT = "_reelflow_profile_settings"
#: every method that names the settings table: the two this fix wraps, and the opening
_TOUCHING = frozenset({"get_profile", "set_profile", "__init__"})

Settings = dict[str, Any]


def install() -> bool:
    """Patch the settings' read and write; False (nothing changed) if the internals differ."""
    try:
        from secantus import storage
    except ImportError:
        return False
    cls = storage.Storage
    read = getattr(cls, "get_profile", None)
    write = getattr(cls, "set_profile", None)
    if read is None or write is None or not hasattr(storage, "_PROFILE_TABLE"):
        return False
    if getattr(read, PATCHED, False):
        return True
    if not methods_naming(cls, "_PROFILE_TABLE") <= _TOUCHING:
        return False

    def get_profile(self: Any, db: str) -> Settings:
        kept = _kept(self)
        settings = kept.get(db)
        if settings is None:
            # a write since this read began has kept its own: it stays
            settings = kept.setdefault(db, read(self, db))
        return dict(settings)

    def set_profile(self: Any, db: str, **kwargs: Any) -> None:
        with self._lock:
            write(self, db, **kwargs)
            _kept(self)[db] = read(self, db)

    for name, patched in {"get_profile": get_profile, "set_profile": set_profile}.items():
        setattr(patched, PATCHED, True)
        setattr(cls, name, patched)
    return True


def _kept(server: Any) -> dict[str, Settings]:
    """The settings ``server`` keeps; made once (``setdefault`` is atomic)."""
    kept: dict[str, Settings] = vars(server).setdefault(KEPT, {})
    return kept
