"""What a clip will probably cost, learnt from what clips cost: no Runware call needed.

Runware's price per second depends on the model and on the output's size (Veo at 4K
costs three times its 720p rate; Seedance at 480p a quarter of its 1080p one), so a price
is learnt per *shape*: the model and the scene's width x height, the fields of its
request that reelflow sends and Runware prices (:func:`price_key`; reelflow sends no
``resolution`` preset and no ``providerSettings``, so never generated audio, whose
default is off: a field that changes the price and is ever sent must join the key).

The poller notes each known cost in memory (:class:`CostBook`, per shape: dollars
and seconds of video) and adds them every ``interval`` to ``cost_stats`` with
one ``$inc`` per shape, never one write per clip. The API reads the per-second
price of each shape from there (:class:`CostEstimator`, cached) and estimates a
scene as its shape's price x duration, scene by scene (a project's scenes may differ in
size); a shape never seen yet costs the configured fallback, or the dearest price per
second seen (of any shape) if that is higher: a model seen at 720p is not estimated at
its 720p price for 4K.
Documents written before prices were learnt per shape (``_id`` the model alone, a mean
over whatever sizes its clips had) are no shape's own price: they count only for "the
dearest price seen", where they can only raise an estimate.
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
#: between a shape's model and its size in a ``cost_stats`` ``_id``; a size has none
KEY_SEPARATOR = "|"
#: the size of a scene that names no width and height (the model's own default size)
DEFAULT_SIZE = "default"
#: Runware's least duration (its generic range is 1-10 s). A clip counts at least this many
#: seconds, both in its estimate and in the price it teaches: the API takes any duration
#: above 0 for a model reelflow has no rules of, and a clip of 0.0001 s would otherwise be
#: reserved at about nothing (a budget admitting any number of them before costs come in)
#: and, if billed at all, teach every tenant's unseen shapes a huge price per second.
LEAST_SECONDS = 1.0

log = get_logger(__name__)


def price_key(model: str, width: int | None, height: int | None) -> str:
    """The ``cost_stats`` ``_id`` of a clip's price: ``<model>|<width>x<height>`` (e.g.
    ``google:3@2|1280x720``), or ``<model>|default`` for a request without width and height.

    Only the last ``|`` separates (a size has none), so no two shapes share a key whatever
    a model is called. Portrait and landscape are two shapes: nothing is assumed of
    Runware's prices beyond what it billed.
    """
    size = DEFAULT_SIZE if width is None or height is None else f"{width}x{height}"
    return f"{model}{KEY_SEPARATOR}{size}"


def is_price_key(key: str) -> bool:
    """Whether a ``cost_stats`` ``_id`` is a shape's (not a model's, from before shapes)."""
    return KEY_SEPARATOR in key


class CostBook:
    """Costs observed by this process since the last flush, per shape (:func:`price_key`)."""

    def __init__(self) -> None:
        self._pending: dict[str, list[float]] = {}

    def observe(
        self,
        model: str,
        duration_s: float | None,
        cost: float | None,
        *,
        width: int | None,
        height: int | None,
    ) -> None:
        """A clip of this model and size cost ``cost`` for ``duration_s`` seconds of video."""
        if cost is None or not duration_s or duration_s <= 0:
            return
        usd_s_n = self._pending.setdefault(price_key(model, width, height), [0.0, 0.0, 0.0])
        usd_s_n[0] += cost
        usd_s_n[1] += max(duration_s, LEAST_SECONDS)
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
                {"_id": key},
                {"$inc": {"usd": usd, "seconds": seconds, "n": n}},
                upsert=True,
            )
            for key, (usd, seconds, n) in taken.items()
        ]
        try:
            await self._collection.bulk_write(writes, ordered=False)
        except Exception:
            # Put them back for the next flush rather than lose them.
            for key, (usd, seconds, n) in taken.items():
                pending = self.book._pending.setdefault(key, [0.0, 0.0, 0.0])
                pending[0] += usd
                pending[1] += seconds
                pending[2] += n
            raise


class CostEstimator:
    """Estimated USD of scenes, from the observed price per second of each shape."""

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
        #: each shape's own price per second
        self._prices: dict[str, float] = {}
        #: the price of a shape never seen (:meth:`_price`)
        self._unseen_price = fallback_usd_per_s
        self._read_at: float | None = None

    async def _refresh(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._ttl_s:
            return
        docs = await self._collection.find({}).to_list(None)
        seen = {
            str(doc["_id"]): float(doc["usd"]) / float(doc["seconds"])
            for doc in docs
            if doc.get("seconds")
        }
        self._prices = {key: price for key, price in seen.items() if is_price_key(key)}
        # A model's price from before shapes counts here only: dearer than what a shape of
        # it was seen at, it raises the estimate of unseen shapes; never any shape's own.
        self._unseen_price = max([self._fallback, *seen.values()])
        self._read_at = now

    async def price_per_s(self, model: str, *, width: int | None, height: int | None) -> float:
        """The estimated USD per second of video of a clip of this model and size."""
        await self._refresh()
        return self._price(price_key(model, width, height))

    def _price(self, key: str) -> float:
        """A shape never seen: the fallback, or the dearest price per second seen (any
        shape, any model), whichever is higher. A budget reserves this much for its clips
        until their costs come in, so too low a figure lets a tenant's first project on a
        dear model (an attacker's walkthrough: $5.60 of clips bought on a $2 budget), or at
        a dear size of a model seen at a cheap one (4K where 720p was seen: three times the
        price), spend past its budget."""
        return self._prices.get(key, self._unseen_price)

    async def estimate(
        self, model: str, scenes: Sequence[ClipRequest], *, default_duration: float
    ) -> list[float]:
        """Each scene's estimated USD, in scene order, each at its own shape's price, for
        its duration (at least :data:`LEAST_SECONDS`)."""
        await self._refresh()
        return [
            round_usd(
                self._price(price_key(model, scene.width, scene.height))
                * max(
                    scene.duration if scene.duration is not None else default_duration,
                    LEAST_SECONDS,
                )
            )
            for scene in scenes
        ]
