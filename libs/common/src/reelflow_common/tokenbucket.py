"""Rate limits as token buckets: ``burst`` at once, then ``rate_per_s`` a second. No I/O.

One :class:`TokenBucket` limits one client (a WebSocket's subscribes);
:class:`KeyedBuckets` holds one per key (an API key's tickets), bounded in memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at ``rate_per_s``; each allowed action takes one."""

    __slots__ = ("_burst", "_clock", "_rate_per_s", "_stamp", "_tokens")

    def __init__(self, rate_per_s: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is (none taken)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate_per_s

    def give_back(self) -> None:
        """Return a token taken for an action that did not happen after all (another limit
        refused it), so that action is not counted."""
        self._tokens = min(self._burst, self._tokens + 1.0)

    def full(self) -> bool:
        """Whether it holds ``burst`` tokens again (forgetting it would change nothing)."""
        self._refill()
        return self._tokens >= self._burst

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate_per_s)


class KeyedBuckets:
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them.

    A key seen for the first time gets a full bucket. Past ``max_keys``, the
    least recently used buckets are forgotten, full ones first: forgetting a
    full bucket changes nothing, and a key flooded enough to be forgotten while
    not full has had ``max_keys`` other keys used since.
    """

    def __init__(
        self, rate_per_s: float, burst: int, *, max_keys: int, clock: Clock = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> float:
        """:meth:`TokenBucket.take` of ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[key] = TokenBucket(
                self._rate_per_s, self._burst, clock=self._clock
            )
        else:
            self._buckets.move_to_end(key)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)

    def _make_room(self) -> None:
        """Forget buckets until one more fits."""
        if len(self._buckets) < self._max_keys:
            return
        for key in [key for key, bucket in self._buckets.items() if bucket.full()]:
            del self._buckets[key]
        while len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)
