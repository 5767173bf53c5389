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


def test_one_keys_subscribe_budget_covers_what_one_socket_may_send_at_once() -> None:
    settings = Settings()

    assert settings.ws_key_subscribe_burst >= settings.ws_subscribe_burst
    assert settings.ws_max_watches_per_key >= settings.ws_max_subscriptions
    with pytest.raises(ValidationError, match=r"ws_key_subscribe_burst .* at least ws_subscribe"):
        Settings(ws_key_subscribe_burst=199, ws_subscribe_burst=200)
    with pytest.raises(ValidationError, match=r"ws_max_watches_per_key .* at least ws_max_subs"):
        Settings(ws_max_watches_per_key=99, ws_max_subscriptions=100)


def test_the_benchmark_lets_its_one_key_open_all_its_sockets_on_one_replica() -> None:
    """The bench opens every socket of its notifier scenario with one key, on one notifier:
    more than production lets one key open there, so its stack raises the cap."""
    plan = NotifierPlan()
    raised = Settings.model_validate(
        {name.removeprefix("REELFLOW_").lower(): value for name, value in plan.settings()}
    )

    assert raised.ws_max_connections_per_key >= plan.connections


def test_a_replica_takes_the_benchmarks_sockets_and_one_keys_cap_before_it_is_full() -> None:
    """The bench opens its 10,000 sockets on one notifier without raising the replica's cap;
    one key alone never fills a replica."""
    settings = Settings()

    assert settings.ws_max_connections >= NotifierPlan().connections
    assert settings.ws_max_connections > settings.ws_max_connections_per_key
