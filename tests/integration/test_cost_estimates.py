"""A budget's estimates: each model and size's own price per second once seen, never less
than the dearest seen for a model or size that was not."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow_common.accounting import CostBook, CostStats
from reelflow_common.accounting.estimates import CostEstimator

pytestmark = pytest.mark.integration

HD = {"width": 1280, "height": 720}


async def seen(db: Any, *costs: tuple[str, float, float]) -> None:
    """Costs the pollers saw: (model, seconds of video, USD)."""
    book = CostBook()
    for model, seconds, usd in costs:
        book.observe(model, seconds, usd, **HD)
    await CostStats(db, book).flush()


async def test_a_model_never_seen_is_estimated_at_the_dearest_price_seen(mongo_db: Any) -> None:
    # An attacker's walkthrough: the first project on a model dearer than the fallback
    # bought $5.60 of clips on a $2 budget, every clip reserved at the fallback.
    await seen(mongo_db, ("klingai:5@3", 10, 2.8), ("google:3@3", 4, 0.4))
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.1)

    assert await estimator.price_per_s("minimax:3@1", **HD) == pytest.approx(0.28)
    assert await estimator.price_per_s("google:3@3", **HD) == pytest.approx(0.1)  # its own


async def test_a_model_never_seen_is_estimated_at_the_fallback_when_it_is_dearer(
    mongo_db: Any,
) -> None:
    await seen(mongo_db, ("google:3@3", 4, 0.4))
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.5)

    assert await estimator.price_per_s("klingai:5@3", **HD) == pytest.approx(0.5)


async def test_with_nothing_seen_every_model_is_estimated_at_the_fallback(mongo_db: Any) -> None:
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.5)

    assert await estimator.price_per_s("klingai:5@3", **HD) == pytest.approx(0.5)


async def test_a_size_never_seen_is_estimated_at_the_dearest_price_seen(mongo_db: Any) -> None:
    # Veo at 4K costs three times 720p: a model seen at 720p only is not priced at it for 4K.
    await seen(mongo_db, ("google:3@2", 8, 1.6), ("klingai:5@3", 10, 2.8))
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.1)

    assert await estimator.price_per_s("google:3@2", width=3840, height=2160) == pytest.approx(0.28)
    assert await estimator.price_per_s("google:3@2", **HD) == pytest.approx(0.2)


async def test_a_models_price_from_before_sizes_is_no_sizes_own(mongo_db: Any) -> None:
    """``cost_stats`` as pollers wrote it before sizes (``_id`` the model: a mean over every
    size): only "the dearest price seen", never the price of a size of that model."""
    await mongo_db["cost_stats"].insert_many(
        [
            {"_id": "google:3@3", "usd": 0.4, "seconds": 4, "n": 1},  # $0.10 a second
            {"_id": "klingai:5@3", "usd": 2.8, "seconds": 10, "n": 1},  # $0.28 a second
        ]
    )
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.2)

    assert await estimator.price_per_s("google:3@3", **HD) == pytest.approx(0.28)
