"""The benchmark's load processes freeze what they hold out of the collector's passes, and count
the passes that remain."""

from __future__ import annotations

import gc

from reelflow_devtools.bench.ws_load import Pauses


def test_what_is_held_is_frozen_and_each_pass_is_counted() -> None:
    pauses = Pauses()
    try:
        held = [[index] for index in range(10_000)]  # stands in for the sockets' objects
        pauses.freeze()
        assert gc.get_freeze_count() >= len(held)

        pauses.restart()
        gc.collect()
        summary = pauses.summary()
        assert summary["passes"] == 1
    finally:
        pauses.close()
