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
  index entries whose keys changed.

A fix whose target differs (another secantusdb version) is left out, and the
server says so on stderr.
"""

from __future__ import annotations

import sys

from reelflow_devtools import (
    secantusd_index_diff,
    secantusd_point_lookup,
    secantusd_read_release,
)

#: what the server prints on stderr for a fix it runs without
WITHOUT_FIX = "reelflow: secantus internals differ; running without"

FIXES = {
    "the _id point lookup for writes": secantusd_point_lookup.install,
    "releasing a read's pages": secantusd_read_release.install,
    "rewriting only the index entries an update changed": secantusd_index_diff.install,
}


def main() -> int:
    for name, install in FIXES.items():
        if not install():
            print(f"{WITHOUT_FIX} {name}", file=sys.stderr)
    from secantus.cli import main as server_main

    code: int = server_main()
    return code


if __name__ == "__main__":
    sys.exit(main())
