"""What one API key may hold and do on this replica, whichever sockets it is spread over.

* Sockets: at most ``ws_max_connections_per_key`` open at once, counted by the
  key a socket authenticated with, however it came (header, ``?token=``, or a
  ticket minted from the key), from the handshake's end to the socket's close: a
  socket past the cap is closed with 4429 before it reads anything.
* Watches: at most ``ws_max_watches_per_key`` projects watched at once by all
  the key's sockets together (a single-project socket's one watch counts too). A
  ``/v1/ws`` subscribe to one more project is refused; a single-project socket
  is bounded by the socket cap instead.
* Subscribes: one token bucket per key, ``ws_key_subscribe_burst`` at once, then
  ``ws_key_subscribe_rate_per_s``, shared by all of the key's ``/v1/ws`` sockets
  (each also has a bucket of its own). It outlives the key's sockets: closing
  and reopening them does not refill it.

One frontend key serves every browser of that frontend, so these are ceilings
on what one key can make a replica hold and do, not per-user limits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reelflow_common.tokenbucket import Clock, KeyedBuckets

CLOSE_TOO_MANY_CONNECTIONS = 4429
#: keys whose subscribe buckets are remembered; past it, full buckets are forgotten first
MAX_KEYS_REMEMBERED = 10_000


@dataclass
class _KeyLoad:
    sockets: int = 0
    watches: int = 0


class KeySlot:
    """One socket's share of its key: the key's watches and subscribe budget."""

    def __init__(self, slots: KeySlots, api_key: str, load: _KeyLoad) -> None:
        self._slots = slots
        self._api_key = api_key
        self._load = load

    @property
    def max_watches(self) -> int:
        return self._slots.max_watches

    def watches_full(self) -> bool:
        """Whether the key watches as many projects as it may (one more would pass the cap)."""
        return self._load.watches >= self._slots.max_watches

    def watched(self) -> None:
        """The socket started watching one more project."""
        self._load.watches += 1

    def unwatched(self) -> None:
        """The socket stopped watching one project."""
        self._load.watches -= 1

    def take_subscribe(self) -> float:
        """A token of the key's subscribe budget: 0.0, or the seconds until there is one."""
        return self._slots.take_subscribe(self._api_key)


class KeySlots:
    """Sockets, watches and subscribe budgets by API key; ``cap`` 0: no socket cap."""

    def __init__(
        self,
        cap: int,
        *,
        max_watches: int,
        subscribe_rate_per_s: float,
        subscribe_burst: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self._cap = cap
        self.max_watches = max_watches
        self._open: dict[str, _KeyLoad] = {}
        self._subscribes = KeyedBuckets(
            subscribe_rate_per_s, subscribe_burst, max_keys=MAX_KEYS_REMEMBERED, clock=clock
        )

    @property
    def cap(self) -> int:
        return self._cap

    @contextmanager
    def holding(self, api_key: str) -> Iterator[KeySlot | None]:
        """One socket of ``api_key`` while the block runs; yields None (none held) when full."""
        load = self._open.get(api_key)
        if self._cap and load is not None and load.sockets >= self._cap:
            yield None
            return
        if load is None:
            load = self._open[api_key] = _KeyLoad()
        load.sockets += 1
        try:
            yield KeySlot(self, api_key, load)
        finally:
            load.sockets -= 1
            if not load.sockets:
                del self._open[api_key]

    def take_subscribe(self, api_key: str) -> float:
        return self._subscribes.take(api_key)

    def open_sockets(self, api_key: str) -> int:
        load = self._open.get(api_key)
        return 0 if load is None else load.sockets
