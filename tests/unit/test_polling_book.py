"""Counting completions in memory, and writing them as one increment per profile."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from reelflow_common.errors import TransientError
from reelflow_common.polling.book import CompletionBook, profile_key
from reelflow_common.polling.histogram import bucket_of
from reelflow_common.polling.plan import ClipProfile
from reelflow_common.polling.stats import PollStats

VEO = ClipProfile("google:3@3", duration=4, width=1280, height=720)
KLING = ClipProfile("klingai:5@3", duration=5)


def pending_counts(book: CompletionBook) -> dict[str, dict[int, float]]:
    pending = book.take_pending()
    book.restore_pending(pending)
    return {key: dict(entry.counts) for key, entry in pending.items()}


def test_a_webhook_completion_counts_in_its_own_bucket() -> None:
    book = CompletionBook()

    book.observe(VEO, elapsed_s=90.0, since_s=None)

    assert pending_counts(book) == {profile_key(VEO): {bucket_of(90.0): 1.0}}


def test_a_polled_completion_is_spread_over_the_checks_that_bracket_it() -> None:
    book = CompletionBook()

    book.observe(VEO, elapsed_s=60.0, since_s=40.0)

    counts = pending_counts(book)[profile_key(VEO)]
    assert sum(counts.values()) == pytest.approx(1.0)
    assert set(counts) == set(range(bucket_of(40.0), bucket_of(60.0) + 1))


def test_progress_at_the_previous_check_narrows_the_bracket() -> None:
    book = CompletionBook()

    # 33 % at 30 s: linear progress says running until 100·30/34 ≈ 88.2 s at least.
    book.observe(VEO, elapsed_s=91.0, since_s=30.0, since_progress=33)

    counts = pending_counts(book)[profile_key(VEO)]
    assert set(counts) <= {bucket_of(88.2), bucket_of(91.0)}


def test_progress_running_behind_the_clock_means_it_just_finished() -> None:
    book = CompletionBook()

    # 10 % at 50 s would mean running until 450 s, yet it is done at 60 s.
    book.observe(VEO, elapsed_s=60.0, since_s=50.0, since_progress=10)

    assert pending_counts(book) == {profile_key(VEO): {bucket_of(60.0): 1.0}}


@pytest.mark.parametrize("elapsed", [0.0, -3.0, float("nan"), float("inf")])
def test_impossible_completion_times_are_ignored(elapsed: float) -> None:
    book = CompletionBook()

    book.observe(VEO, elapsed_s=elapsed, since_s=None)

    assert pending_counts(book) == {}


def test_the_webhooks_flag_does_not_split_the_counts() -> None:
    hooked = ClipProfile(VEO.model, VEO.duration, VEO.width, VEO.height, webhooks=True)

    assert profile_key(hooked) == profile_key(VEO)


class FakeCollection:
    """Records bulk writes; fails them while ``failing``."""

    def __init__(self) -> None:
        self.writes: list[list[Any]] = []
        self.failing = False

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> None:
        if self.failing:
            raise AutoReconnect("connection refused")
        self.writes.append(requests)


class FakeDatabase:
    def __init__(self) -> None:
        self.collection = FakeCollection()

    def __getitem__(self, name: str) -> FakeCollection:
        assert name == "poll_stats"
        return self.collection


async def test_a_flush_is_one_increment_per_profile_not_per_clip() -> None:
    db = FakeDatabase()
    stats = PollStats(db, CompletionBook(), clock=lambda: 86_400 * 20_000 + 5)  # type: ignore[arg-type]
    for i in range(100):
        stats.observe(VEO if i % 4 else KLING, elapsed_s=60.0 + i, since_s=50.0 + i)

    written = await stats.flush()

    assert written == 2
    [updates] = db.collection.writes
    by_id = {update._filter["_id"]: update._doc for update in updates}
    assert set(by_id) == {f"{profile_key(VEO)}|20000", f"{profile_key(KLING)}|20000"}
    veo = by_id[f"{profile_key(VEO)}|20000"]
    assert veo["$inc"]["n"] == pytest.approx(75.0)
    assert veo["$setOnInsert"]["model"] == "google:3@3"
    assert await stats.flush() == 0  # nothing new, nothing written


async def test_counts_that_could_not_be_written_go_with_the_next_flush() -> None:
    db = FakeDatabase()
    stats = PollStats(db, CompletionBook())  # type: ignore[arg-type]
    stats.observe(VEO, elapsed_s=90.0)
    db.collection.failing = True

    with pytest.raises(TransientError):
        await stats.flush()
    stats.observe(VEO, elapsed_s=91.0)
    db.collection.failing = False
    await stats.flush()

    [[update]] = db.collection.writes
    assert update._doc["$inc"]["n"] == pytest.approx(2.0)
