"""What a clip will probably cost, learnt from what clips cost: no Runware call needed.

The poller notes each known cost in memory (:class:`CostBook`, per model: dollars
and seconds of video) and adds them every ``interval`` to ``cost_stats`` with
one ``$inc`` per model, never one write per clip. The API reads the per-second
price of each model from there (:class:`CostEstimator`, cached) and estimates a
scene as price x duration; a model never seen yet costs the configured fallback, or
the dearest price per second seen if that is higher.
A flush whose answer is lost may be retried and counted twice: a small error in
an estimate, accepted, as for the poll statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pymongo import UpdateOne

from reelflow_common.domain import ClipRequest
from reelflow_common.logging import get_logger
from reelflow_common.money import round_usd
from reelflow_common.mongo import Database

COLLECTION = "cost_stats"

log = get_logger(__name__)


class CostBook:
    """Costs observed by this process since the last flush, per model."""

    def __init__(self) -> None:
        self._pending: dict[str, list[float]] = {}

    def observe(self, model: str, duration_s: float | None, cost: float | None) -> None:
        if cost is None or not duration_s or duration_s <= 0:
            return
        usd_s_n = self._pending.setdefault(model, [0.0, 0.0, 0.0])
        usd_s_n[0] += cost
        usd_s_n[1] += duration_s
        usd_s_n[2] += 1

    def take(self) -> dict[str, list[float]]:
        taken, self._pending = self._pending, {}
        return taken


class CostStats:
    """Writes a :class:`CostBook` to ``cost_stats``."""

    def __init__(self, db: Database, book: CostBook) -> None:
        self.book = book
        self._collection = db[COLLECTION]

    async def flush(self) -> None:
        taken = self.book.take()
        if not taken:
            return
        writes = [
            UpdateOne(
                {"_id": model},
                {"$inc": {"usd": usd, "seconds": seconds, "n": n}},
                upsert=True,
            )
            for model, (usd, seconds, n) in taken.items()
        ]
        try:
            await self._collection.bulk_write(writes, ordered=False)
        except Exception:
            # Put them back for the next flush rather than lose them.
            for model, (usd, seconds, n) in taken.items():
                pending = self.book._pending.setdefault(model, [0.0, 0.0, 0.0])
                pending[0] += usd
                pending[1] += seconds
                pending[2] += n
            raise


class CostEstimator:
    """Estimated USD of scenes, from the observed price per second of each model."""

    def __init__(
        self,
        db: Database,
        *,
        fallback_usd_per_s: float,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = db[COLLECTION]
        self._fallback = fallback_usd_per_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._prices: dict[str, float] = {}
        self._read_at: float | None = None

    async def price_per_s(self, model: str) -> float:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl_s:
            docs = await self._collection.find({}).to_list(None)
            self._prices = {
                str(doc["_id"]): float(doc["usd"]) / float(doc["seconds"])
                for doc in docs
                if doc.get("seconds")
            }
            self._read_at = now
        return self._prices.get(model, self._unseen())

    def _unseen(self) -> float:
        """A model never seen: the fallback, or the dearest price per second seen, whichever is
        higher. A budget reserves this much for its clips until their costs come in, so too
        low a figure lets a tenant's first project on a dear model spend past its budget (an
        attacker's walkthrough: $5.60 of clips bought on a $2 budget)."""
        return max([self._fallback, *self._prices.values()])

    async def estimate(
        self, model: str, scenes: Sequence[ClipRequest], *, default_duration: float
    ) -> list[float]:
        """Each scene's estimated USD, in scene order."""
        price = await self.price_per_s(model)
        return [
            round_usd(price * (scene.duration if scene.duration is not None else default_duration))
            for scene in scenes
        ]
