"""The notifier's abuse limits by default: never in the way of a real client, or of the bench."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow_devtools.bench.notifier import NotifierPlan
from reelflow_notifier.settings import Settings


def test_a_client_may_subscribe_to_all_it_may_watch_at_once() -> None:
    settings = Settings()

    assert settings.ws_subscribe_burst >= settings.ws_max_subscriptions


def test_a_burst_below_what_a_client_may_watch_is_refused_at_start() -> None:
    with pytest.raises(
        ValidationError, match=r"ws_subscribe_burst .* at least ws_max_subscriptions"
    ):
        Settings(ws_subscribe_burst=50, ws_max_subscriptions=100)
    Settings(ws_subscribe_burst=100, ws_max_subscriptions=100)


def test_one_key_may_open_the_benchmarks_sockets_on_one_replica() -> None:
    """The bench opens every socket of its notifier scenario with one key, on one notifier."""
    cap = Settings().ws_max_connections_per_key

    assert cap == 0 or cap > NotifierPlan().connections
