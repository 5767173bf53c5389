"""A budget's estimates are learnt per model AND size: Runware prices Veo at 4K three times
its 720p rate, so a model seen at 720p must not reserve 4K clips at its 720p price (a budget
would admit three times its amount of clips in flight before their costs come in)."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow_common.accounting.estimates import CostBook, CostEstimator, CostStats, price_key
from reelflow_common.domain import ClipRequest

VEO = "google:3@2"
HD = {"width": 1280, "height": 720}
UHD = {"width": 3840, "height": 2160}


class FakeCollection:
    """``cost_stats`` as ``CostStats`` writes it (one ``$inc`` upsert per ``_id``)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.bulk_writes: list[list[Any]] = []

    async def bulk_write(self, writes: list[Any], *, ordered: bool) -> None:
        self.bulk_writes.append(writes)
        for write in writes:
            key = write._filter["_id"]
            doc = self.docs.setdefault(key, {"_id": key})
            for field, by in write._doc["$inc"].items():
                doc[field] = doc.get(field, 0) + by

    def find(self, query: dict[str, Any]) -> FakeCollection:
        assert query == {}
        return self

    async def to_list(self, length: None) -> list[dict[str, Any]]:
        return [dict(doc) for doc in self.docs.values()]


class FakeDb:
    def __init__(self) -> None:
        self.cost_stats = FakeCollection()

    def __getitem__(self, name: str) -> FakeCollection:
        assert name == "cost_stats"
        return self.cost_stats


async def seen(db: FakeDb, *costs: tuple[str, dict[str, int], float, float | None]) -> None:
    """Costs the pollers saw: (model, size, seconds of video, USD), flushed once."""
    book = CostBook()
    for model, size, seconds, usd in costs:
        book.observe(model, seconds, usd, **size)
    await CostStats(db, book).flush()  # type: ignore[arg-type]


def estimator(db: FakeDb, fallback: float) -> CostEstimator:
    return CostEstimator(db, fallback_usd_per_s=fallback, ttl_s=0)  # type: ignore[arg-type]


def scene(seconds: float, size: dict[str, int]) -> ClipRequest:
    return ClipRequest(prompt="a fox", duration=seconds, **size)


async def test_4k_on_a_model_seen_only_at_720p_is_estimated_at_the_fallback() -> None:
    db = FakeDb()
    await seen(db, (VEO, HD, 8, 1.6))  # $0.20 a second at 720p

    estimates = await estimator(db, fallback=0.6).estimate(
        VEO, [scene(8, HD), scene(8, UHD)], default_duration=4
    )

    assert estimates == [pytest.approx(1.6), pytest.approx(4.8)]  # not 1.6 for the 4K one


async def test_4k_unseen_is_estimated_at_the_dearest_price_seen_of_any_model_and_size() -> None:
    db = FakeDb()
    await seen(db, (VEO, HD, 8, 1.6), ("klingai:5@3", HD, 10, 2.8))  # $0.20 and $0.28 a second

    assert await estimator(db, fallback=0.1).price_per_s(VEO, **UHD) == pytest.approx(0.28)


async def test_each_size_seen_is_estimated_at_its_own_price() -> None:
    db = FakeDb()
    await seen(db, (VEO, HD, 8, 1.6), (VEO, UHD, 8, 4.8), (VEO, HD, 4, 0.8))

    estimates = await estimator(db, fallback=0.5).estimate(
        VEO, [scene(4, UHD), scene(4, HD)], default_duration=4
    )

    assert estimates == [pytest.approx(2.4), pytest.approx(0.8)]
    # Portrait is a size of its own: not seen, so not the landscape price.
    assert await estimator(db, fallback=0.5).price_per_s(
        VEO, width=720, height=1280
    ) == pytest.approx(0.6)


async def test_a_flush_writes_one_inc_per_model_and_size() -> None:
    db = FakeDb()

    await seen(db, (VEO, HD, 8, 1.6), (VEO, HD, 4, 0.8), (VEO, UHD, 8, 4.8), (VEO, HD, 6, None))

    (writes,) = db.cost_stats.bulk_writes
    assert sorted(write._filter["_id"] for write in writes) == [
        "google:3@2|1280x720",
        "google:3@2|3840x2160",
    ]
    assert db.cost_stats.docs["google:3@2|1280x720"] == {
        "_id": "google:3@2|1280x720",
        "usd": pytest.approx(2.4),
        "seconds": 12,
        "n": 2,
    }


async def test_a_models_price_from_before_sizes_counts_only_as_a_price_seen() -> None:
    """``cost_stats`` documents keyed by the model alone (a mean over every size its clips
    had) are no size's own price; they still raise what a size never seen costs."""
    db = FakeDb()
    db.cost_stats.docs[VEO] = {"_id": VEO, "usd": 3.2, "seconds": 8, "n": 1}  # $0.40 a second

    price = estimator(db, fallback=0.3)

    assert await price.price_per_s(VEO, **HD) == pytest.approx(0.4)  # not seen: the dearest
    await seen(db, (VEO, HD, 8, 1.6))
    assert await price.price_per_s(VEO, **HD) == pytest.approx(0.2)  # seen: its own


def test_a_key_names_the_model_and_the_size() -> None:
    assert price_key(VEO, 1280, 720) == "google:3@2|1280x720"
    assert price_key(VEO, None, None) == "google:3@2|default"
    # A model called like a shape is still another key.
    assert price_key("a|1x1", None, None) != price_key("a", 1, 1)


async def test_a_clip_of_a_sliver_of_a_second_is_estimated_as_one_second() -> None:
    """Of a model with no rules in reelflow, any duration above 0 is taken: a budget must
    not hold next to nothing for it, or a tenant's budget admits any number of them."""
    db = FakeDb()
    await seen(db, (VEO, HD, 8, 1.6))  # $0.20 a second

    estimates = await estimator(db, fallback=0.6).estimate(
        VEO, [scene(0.0001, HD), scene(0.5, HD), scene(2, HD)], default_duration=4
    )

    assert estimates == [pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.4)]


async def test_a_sliver_of_a_second_billed_teaches_no_huge_price_per_second() -> None:
    """What it was billed counts as for one second: every tenant's estimate of an unseen
    shape is the dearest price per second seen, so one outlier would refuse them all."""
    db = FakeDb()
    await seen(db, ("some:model@1", HD, 0.001, 0.5))

    estimates = await estimator(db, fallback=0.6).estimate(VEO, [scene(5, UHD)], default_duration=4)

    assert estimates == [pytest.approx(3.0)]  # the fallback's $0.60 a second, not $500
