"""SecantusDB's Python server with reelflow's fixes: what the dev and test database runs.

``python -m reelflow_devtools.secantusd <secantusd-py options>`` is what
:mod:`reelflow_devtools.embedded_mongo` starts (the module name keeps ``secantusd``
in the command line, which is how the benchmark finds the server's process).
Each fix is a module of its own, with the measurement that called for it:

- :mod:`reelflow_devtools.secantusd_point_lookup`: a write finds the document
  its filter names by ``_id`` instead of scanning the collection;
- :mod:`reelflow_devtools.secantusd_read_release`: a read lets go of the pages it
  read, so a hot document's page can be evicted while writers queue for it;
- :mod:`reelflow_devtools.secantusd_index_diff`: an update rewrites only the
  index entries whose keys changed;
- :mod:`reelflow_devtools.secantusd_index_catalog`: a write transaction reads
  the index catalog once;
- :mod:`reelflow_devtools.secantusd_update_copy`: an update copies only the
  parts of the document it changes;
- :mod:`reelflow_devtools.secantusd_range_bracket`: a one-sided range on an
  index scans only the entries of its bound's type;
- :mod:`reelflow_devtools.secantusd_profile_level`: a command learns the
  profiling level without taking the server's lock.

A fix whose target differs (another secantusdb version) is left out, and the
server says so on stderr. ``REELFLOW_SECANTUSD_WITHOUT=<module>,<module>`` (the
modules' names, e.g. ``secantusd_update_copy``) leaves the named fixes out, to
measure what one does (A/B runs of ``make bench``); the server says so on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType

from reelflow_devtools import (
    secantusd_index_catalog,
    secantusd_index_diff,
    secantusd_point_lookup,
    secantusd_profile_level,
    secantusd_range_bracket,
    secantusd_read_release,
    secantusd_update_copy,
)

#: what the server prints on stderr for a fix it runs without
WITHOUT_FIX = "reelflow: secantus internals differ; running without"
#: ... and for a fix left out on request
LEFT_OUT = "reelflow: REELFLOW_SECANTUSD_WITHOUT; running without"
#: the environment variable naming fixes to leave out (module names, comma-separated)
WITHOUT_ENV = "REELFLOW_SECANTUSD_WITHOUT"


def _fix(module: ModuleType, name: str) -> tuple[str, str, Callable[[], bool]]:
    return module.__name__.rpartition(".")[2], name, module.install


#: (module name, what it fixes, its install), in the order they are installed
FIXES = [
    _fix(secantusd_point_lookup, "the _id point lookup for writes"),
    _fix(secantusd_read_release, "releasing a read's pages"),
    _fix(secantusd_index_diff, "rewriting only the index entries an update changed"),
    _fix(secantusd_index_catalog, "reading the index catalog once per write transaction"),
    _fix(secantusd_update_copy, "copying only the updated parts of a document"),
    _fix(secantusd_range_bracket, "scanning only the bound's type for a one-sided range"),
    _fix(secantusd_profile_level, "keeping the profiling level out of the server's lock"),
]


def left_out(value: str) -> frozenset[str]:
    """The fixes ``REELFLOW_SECANTUSD_WITHOUT``'s value names; unknown names are an error."""
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = names - {module for module, _, _ in FIXES}
    if unknown:
        known = ", ".join(module for module, _, _ in FIXES)
        raise SystemExit(f"{WITHOUT_ENV}: no fix named {', '.join(sorted(unknown))} ({known})")
    return names


def main() -> int:
    without = left_out(os.environ.get(WITHOUT_ENV, ""))
    for module, name, install in FIXES:
        if module in without:
            print(f"{LEFT_OUT} {name} ({module})", file=sys.stderr)
        elif not install():
            print(f"{WITHOUT_FIX} {name}", file=sys.stderr)
    from secantus.cli import main as server_main

    code: int = server_main()
    return code


if __name__ == "__main__":
    sys.exit(main())
