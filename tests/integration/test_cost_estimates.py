"""A budget's estimates: each model's own price per second once seen, never less than the
dearest seen for a model that was not."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow_common.accounting import CostBook, CostStats
from reelflow_common.accounting.estimates import CostEstimator

pytestmark = pytest.mark.integration


async def seen(db: Any, *costs: tuple[str, float, float]) -> None:
    """Costs the pollers saw: (model, seconds of video, USD)."""
    book = CostBook()
    for model, seconds, usd in costs:
        book.observe(model, seconds, usd)
    await CostStats(db, book).flush()


async def test_a_model_never_seen_is_estimated_at_the_dearest_price_seen(mongo_db: Any) -> None:
    # An attacker's walkthrough: the first project on a model dearer than the fallback
    # bought $5.60 of clips on a $2 budget, every clip reserved at the fallback.
    await seen(mongo_db, ("klingai:5@3", 10, 2.8), ("google:3@3", 4, 0.4))
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.1)

    assert await estimator.price_per_s("minimax:3@1") == pytest.approx(0.28)
    assert await estimator.price_per_s("google:3@3") == pytest.approx(0.1)  # its own


async def test_a_model_never_seen_is_estimated_at_the_fallback_when_it_is_dearer(
    mongo_db: Any,
) -> None:
    await seen(mongo_db, ("google:3@3", 4, 0.4))
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.5)

    assert await estimator.price_per_s("klingai:5@3") == pytest.approx(0.5)


async def test_with_nothing_seen_every_model_is_estimated_at_the_fallback(mongo_db: Any) -> None:
    estimator = CostEstimator(mongo_db, fallback_usd_per_s=0.5)

    assert await estimator.price_per_s("klingai:5@3") == pytest.approx(0.5)
