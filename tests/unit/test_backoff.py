"""The one Backoff type: delays, jitter, and the wait-queue ladder built from them."""

from __future__ import annotations

import random

import pytest

from reelflow_common.backoff import Backoff


@pytest.mark.parametrize(
    ("attempt", "expected_s"), [(0, 2.0), (1, 4.0), (2, 8.0), (5, 64.0), (6, 120.0), (10**9, 120.0)]
)
def test_delays_grow_by_the_factor_up_to_the_cap(attempt: int, expected_s: float) -> None:
    assert Backoff(first_s=2, cap_s=120).delay_s(attempt) == expected_s


def test_a_fractional_factor_grows_step_by_step() -> None:
    backoff = Backoff(first_s=20, cap_s=120, factor=1.5)

    assert [backoff.delay_s(n) for n in range(6)] == [20, 30, 45, 67.5, 101.25, 120]


def test_a_factor_of_one_never_grows() -> None:
    assert Backoff(first_s=5, cap_s=60, factor=1.0).delay_s(100) == 5


def test_a_first_delay_above_the_cap_is_the_cap() -> None:
    assert Backoff(first_s=10, cap_s=3).delay_s(0) == 3


def test_jitter_draws_each_delay_below_the_schedule_and_above_its_floor() -> None:
    backoff = Backoff(first_s=2, cap_s=120, jitter=0.5)
    rng = random.Random(7)

    delays = [backoff.delay_s(2, rng) for _ in range(500)]

    assert all(4.0 <= delay <= 8.0 for delay in delays)
    assert max(delays) - min(delays) > 3  # spread, not one value


def test_jitter_is_reproducible_with_a_seeded_generator() -> None:
    backoff = Backoff(first_s=1, cap_s=60, jitter=0.3)

    first = [backoff.delay_s(n, random.Random(3)) for n in range(5)]
    again = [backoff.delay_s(n, random.Random(3)) for n in range(5)]

    assert first == again


@pytest.mark.parametrize(
    "fields",
    [
        {"first_s": 0, "cap_s": 1},
        {"first_s": 1, "cap_s": 0},
        {"first_s": 1, "cap_s": 2, "factor": 0.5},
        {"first_s": 1, "cap_s": 2, "jitter": 1.5},
    ],
)
def test_a_schedule_that_makes_no_sense_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Backoff(**fields)


# --- the ladder: one wait queue per rung ------------------------------------------------


def test_rungs_double_up_to_the_cap() -> None:
    assert Backoff(first_s=2, cap_s=120).rungs_ms() == (
        2000,
        4000,
        8000,
        16000,
        32000,
        64000,
        120000,
    )


def test_rungs_of_a_fractional_factor_end_exactly_at_the_cap() -> None:
    rungs = Backoff(first_s=20, cap_s=120, factor=1.5).rungs_ms()

    assert rungs == (20000, 30000, 45000, 67500, 101250, 120000)


def test_rungs_without_growth_are_first_and_cap() -> None:
    assert Backoff(first_s=5, cap_s=60, factor=1.0).rungs_ms() == (5000, 60000)


def test_rungs_with_first_above_cap_are_only_the_cap() -> None:
    assert Backoff(first_s=10, cap_s=3).rungs_ms() == (3000,)


def test_rungs_never_have_a_zero_ttl() -> None:
    assert Backoff(first_s=0.0001, cap_s=0.002).rungs_ms() == (1, 2)


@pytest.mark.parametrize(("attempt", "expected_ms"), [(0, 50), (1, 100), (2, 200), (9, 200)])
def test_the_rung_of_an_attempt_climbs_then_stays_at_the_cap(
    attempt: int, expected_ms: int
) -> None:
    assert Backoff(first_s=0.05, cap_s=0.2).rung_ms(attempt) == expected_ms


def test_the_rung_of_an_attempt_is_its_delay_in_milliseconds() -> None:
    backoff = Backoff(first_s=20, cap_s=120, factor=1.5)

    assert [backoff.rung_ms(n) for n in range(8)] == [
        round(backoff.delay_s(n) * 1000) for n in range(8)
    ]


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
def test_the_nearest_rung_is_nearest_on_a_log_scale(delay_s: float, expected_ms: int) -> None:
    assert Backoff(first_s=0.05, cap_s=0.2).nearest_rung_ms(delay_s) == expected_ms


def test_jittered_delays_land_on_more_than_one_rung() -> None:
    backoff = Backoff(first_s=2, cap_s=120, jitter=0.5)
    rng = random.Random(7)

    picked = {backoff.nearest_rung_ms(backoff.delay_s(2, rng)) for _ in range(200)}

    # The third attempt's ceiling is 8 s: a jittered delay waits 4 s or 8 s, not always 4 s.
    assert picked == {4000, 8000}


@pytest.mark.parametrize(
    ("delay_s", "expected_ms"), [(0.001, 50), (0.05, 50), (0.099, 50), (0.1, 100), (0.19, 100)]
)
def test_a_bound_is_put_on_the_longest_rung_not_above_it(delay_s: float, expected_ms: int) -> None:
    assert Backoff(first_s=0.05, cap_s=0.2).rung_at_most_ms(delay_s) == expected_ms
