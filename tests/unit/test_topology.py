"""Delay ladders, rung picking and prefixed names: no broker needed."""

from __future__ import annotations

import pytest

from reelflow_common.broker.policy import is_transient, retry_delay_ms
from reelflow_common.errors import InvalidMessage, TransientError
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import (
    CHECK_CLIP,
    HINTED_CHECK,
    SUBMIT_CLIP,
    Topology,
    delay_ladder,
    pick_rung,
)


def test_delay_ladder_doubles_up_to_the_cap() -> None:
    assert delay_ladder(2, 2.0, 120) == (2000, 4000, 8000, 16000, 32000, 64000, 120000)


def test_delay_ladder_with_a_fractional_backoff_ends_exactly_at_the_cap() -> None:
    assert delay_ladder(20, 1.5, 120) == (20000, 30000, 45000, 67500, 101250, 120000)


def test_delay_ladder_without_backoff_is_first_and_cap() -> None:
    assert delay_ladder(5, 1.0, 60) == (5000, 60000)


def test_delay_ladder_with_first_above_cap_is_only_the_cap() -> None:
    assert delay_ladder(10, 2.0, 3) == (3000,)


def test_delay_ladder_never_has_a_zero_ttl() -> None:
    assert delay_ladder(0.0001, 2.0, 0.002) == (1, 2)


@pytest.mark.parametrize(
    ("delay_s", "expected_ms"),
    [
        (0.0, 50),
        (0.01, 50),
        (0.05, 50),
        (0.07, 50),
        (0.072, 100),
        (0.1, 100),
        (0.15, 200),
        (60, 200),
    ],
)
def test_pick_rung_takes_the_rung_nearest_the_delay_on_a_log_scale(
    delay_s: float, expected_ms: int
) -> None:
    assert pick_rung((50, 100, 200), delay_s) == expected_ms


@pytest.mark.parametrize(("retries", "expected_ms"), [(0, 50), (1, 100), (2, 200), (9, 200)])
def test_retry_delay_backs_off_then_stays_at_the_cap(retries: int, expected_ms: int) -> None:
    assert retry_delay_ms((50, 100, 200), retries) == expected_ms


def test_topology_prefixes_every_name() -> None:
    topology = Topology.from_settings(TopologySettings(amqp_prefix="t1."))

    assert topology.events_exchange == "t1.reelflow.events"
    assert topology.queue(CHECK_CLIP) == "t1.poller.check_clip"
    assert topology.dead_letter_queue(CHECK_CLIP) == "t1.poller.check_clip.dlq"
    assert topology.wait_queue(CHECK_CLIP, 20000) == "t1.poller.check_clip.wait.20000ms"


def test_topology_gives_each_work_queue_its_ladder() -> None:
    settings = TopologySettings(
        retry_initial_delay_s=1, retry_max_delay_s=4, poll_initial_delay_s=10, poll_max_delay_s=20
    )
    topology = Topology.from_settings(settings)

    assert topology.ladders[SUBMIT_CLIP] == (1000, 2000, 4000)
    assert topology.ladders[HINTED_CHECK] == (1000, 2000, 4000)
    assert topology.ladders[CHECK_CLIP] == (10000, 15000, 20000)
    assert topology.wait_queue_for(CHECK_CLIP, 17) == "poller.check_clip.wait.15000ms"


def test_only_outages_are_transient() -> None:
    from aio_pika.exceptions import AMQPConnectionError
    from pymongo.errors import AutoReconnect, DuplicateKeyError, ServerSelectionTimeoutError

    assert is_transient(TransientError("runware down"))
    assert is_transient(AutoReconnect("primary stepped down"))
    assert is_transient(ServerSelectionTimeoutError("no server"))
    assert is_transient(AMQPConnectionError("broker gone"))
    assert not is_transient(DuplicateKeyError("dup"))
    assert not is_transient(InvalidMessage("garbage"))
    assert not is_transient(KeyError("bug"))


def test_jittered_retry_delays_land_on_more_than_one_rung() -> None:
    import random

    from reelflow_submitter.service import retry_delay_s

    rungs = delay_ladder(2.0, 2.0, 120.0)
    rng = random.Random(7)
    picked = {pick_rung(rungs, retry_delay_s(3, base_s=2, cap_s=120, rng=rng)) for _ in range(200)}
    # The third attempt's ceiling is 8 s: a jittered delay waits 4 s or 8 s, not always 4 s.
    assert picked == {4000, 8000}
