"""How many sockets this replica holds at once, whatever their keys: ``ws_max_connections``.

Each open socket holds memory (about 48 KiB: docs/BENCHMARKS.md), and a
replica past its memory limit is OOM-killed with every socket it holds. So a
socket is counted from its admission, at the start of the endpoint, before
its key is checked, to its close, refused ones (bad key, key's cap, bad
query) included until they are closed; one past the cap is closed with 1013
before anything is looked up for it (``reelflow_notifier.routes``).

This is the one count of open sockets: ``reelflow_ws_connections`` follows it,
and ``reelflow_ws_connections_max`` is its cap, for the alert at 80 % of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reelflow_notifier.metrics import WS_CONNECTIONS, WS_CONNECTIONS_MAX


class Connections:
    """The sockets open on this replica; ``cap`` 0: no cap."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._open = 0
        WS_CONNECTIONS_MAX.set(cap)

    @property
    def cap(self) -> int:
        return self._cap

    @property
    def open(self) -> int:
        return self._open

    @contextmanager
    def holding(self) -> Iterator[bool]:
        """One socket's place while the block runs; yields False (no place held) when full."""
        if self._cap and self._open >= self._cap:
            yield False
            return
        self._open += 1
        WS_CONNECTIONS.inc()
        try:
            yield True
        finally:
            self._open -= 1
            WS_CONNECTIONS.dec()
