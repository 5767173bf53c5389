"""At most ``ws_max_connections_per_key`` open sockets per API key on this replica.

Counted by the key a socket authenticated with, however it came (header,
``?token=``, or a ticket minted from the key), from the handshake's end to the
socket's close: a socket past the cap is closed with 4429 before it reads
anything. One frontend key serves every browser of that frontend, so the cap is
a ceiling on what one key can make a replica hold, not a per-user limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

CLOSE_TOO_MANY_CONNECTIONS = 4429


class KeySlots:
    """Open sockets by API key; ``cap`` 0: no cap (still counted)."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._open: Counter[str] = Counter()

    @property
    def cap(self) -> int:
        return self._cap

    @contextmanager
    def holding(self, api_key: str) -> Iterator[bool]:
        """One slot of ``api_key`` while the block runs; yields False (none held) when full."""
        if self._cap and self._open[api_key] >= self._cap:
            yield False
            return
        self._open[api_key] += 1
        try:
            yield True
        finally:
            self._open[api_key] -= 1
            if not self._open[api_key]:
                del self._open[api_key]

    def open_sockets(self, api_key: str) -> int:
        return self._open.get(api_key, 0)
