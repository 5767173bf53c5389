"""Completion counts shared by every poller replica and every restart (``poll_stats``).

Completions are counted in memory (:class:`~reelflow_common.polling.book.CompletionBook`)
and written every ``interval`` with one ``$inc`` per profile on its bucket counters,
never one write per clip; then every replica's counts are read back and planned from.
One document per profile and UTC day::

    {"_id": "google:3@3|4s|1280x720|20561", "key": "google:3@3|4s|1280x720",
     "day": 20561, "model": "google:3@3", "duration": 4.0, "width": 1280, "height": 720,
     "counts": {"118": 3.2, "119": 0.8}, "n": 4.0}

Only the last ``days`` days are read, so the plan follows a model whose speed
changes. A write whose answer is lost may be retried and counted twice: a small,
rare error in a statistic, accepted rather than a second collection to make it exact.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from reelflow_common.errors import TransientError
from reelflow_common.lifecycle import cut_short_by
from reelflow_common.logging import get_logger
from reelflow_common.mongo import Database
from reelflow_common.polling.book import CompletionBook, Counts, ProfileCounts
from reelflow_common.polling.histogram import END_BUCKET, FIRST_BUCKET
from reelflow_common.polling.plan import ClipProfile

COLLECTION = "poll_stats"
_DAY_S = 86_400

log = get_logger(__name__)


class PollStats:
    """Writes this process's completion counts and reads everyone's into ``book``."""

    def __init__(
        self,
        db: Database,
        book: CompletionBook,
        *,
        days: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self._collection = db[COLLECTION]
        self._days = days
        self._clock = clock

    async def ensure_indexes(self) -> None:
        """The index :meth:`load` reads by; call it before the first write."""
        await self._collection.create_index([("day", ASCENDING)], name="day")

    def observe(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        """Count a completion in memory (written by the next :meth:`flush`)."""
        self.book.observe(
            profile, elapsed_s=elapsed_s, since_s=since_s, since_progress=since_progress
        )

    async def flush(self) -> int:
        """Write the counts gathered since the last flush; returns the profiles written."""
        pending = self.book.take_pending()
        if not pending:
            return 0
        keys = list(pending)
        day = self._today()
        updates = [_increment(key, day, pending[key]) for key in keys]
        try:
            await self._collection.bulk_write(updates, ordered=False)
        except BulkWriteError as exc:
            failed = {error["index"] for error in exc.details.get("writeErrors", [])}
            self.book.restore_pending({keys[i]: pending[keys[i]] for i in failed})
            raise TransientError(f"poll_stats: {len(failed)} profile counts not written") from exc
        except PyMongoError as exc:
            self.book.restore_pending(pending)
            raise TransientError(f"poll_stats not written: {exc}") from exc
        except asyncio.CancelledError:
            # A stop that did not get the answer in lifecycle.STOP_GRACE_S: the last flush writes
            # them (twice, if this write did reach the database: as with a lost answer).
            self.book.restore_pending(pending)
            raise
        return len(updates)

    async def load(self) -> None:
        """Read every replica's counts of the last ``days`` days; plans follow them."""
        first_day = self._today() - self._days + 1
        snapshot: dict[str, ProfileCounts] = {}
        try:
            async for doc in self._collection.find({"day": {"$gte": first_day}}):
                entry = _entry(doc)
                if entry is None:
                    continue
                key, profile, counts = entry
                merged: Counts = dict(snapshot[key].counts) if key in snapshot else {}
                for k, count in counts.items():
                    merged[k] = merged.get(k, 0.0) + count
                snapshot[key] = ProfileCounts(profile, merged)
        except PyMongoError as exc:
            raise TransientError(f"poll_stats not read: {exc}") from exc
        self.book.replace_shared(snapshot)

    async def refresh(self) -> None:
        """Write this process's counts, then read everyone's; an outage is only logged."""
        await self._quietly(self.flush)
        await self._quietly(self.load)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """:meth:`refresh` every ``interval_s`` until ``stop``, then flush once more.

        A service calls :meth:`refresh` once before it starts taking messages, so its
        first plans already come from the shared counts.
        """
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                await cut_short_by(stop, self.refresh())
                continue
            await self._quietly(self.flush)
            return

    async def _quietly(self, step: Callable[[], Any]) -> None:
        # Statistics are an optimisation: a database outage leaves the last plans in place.
        try:
            await step()
        except TransientError as exc:
            log.warning("poll_stats_failed", error=str(exc))

    def _today(self) -> int:
        return int(self._clock() // _DAY_S)


def _increment(key: str, day: int, entry: ProfileCounts) -> UpdateOne:
    profile = entry.profile
    increments: dict[str, float] = {f"counts.{k}": count for k, count in entry.counts.items()}
    increments["n"] = entry.total
    return UpdateOne(
        {"_id": f"{key}|{day}"},
        {
            "$inc": increments,
            "$setOnInsert": {
                "key": key,
                "day": day,
                "model": profile.model,
                "duration": profile.duration,
                "width": profile.width,
                "height": profile.height,
            },
        },
        upsert=True,
    )


def _entry(doc: dict[str, Any]) -> tuple[str, ClipProfile, Counts] | None:
    """A stored document as (key, profile, counts); None for one this code cannot read."""
    try:
        profile = ClipProfile(
            model=str(doc["model"]),
            duration=None if doc.get("duration") is None else float(doc["duration"]),
            width=None if doc.get("width") is None else int(doc["width"]),
            height=None if doc.get("height") is None else int(doc["height"]),
        )
        counts = {int(k): float(v) for k, v in dict(doc.get("counts") or {}).items()}
        counts = {
            k: v for k, v in counts.items() if FIRST_BUCKET <= k < END_BUCKET and 0 <= v < math.inf
        }
    except (KeyError, TypeError, ValueError):
        log.warning("poll_stats_document_skipped", id=str(doc.get("_id")))
        return None
    return str(doc["key"]), profile, counts
