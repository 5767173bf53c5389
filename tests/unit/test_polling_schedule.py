"""The histogram of completion times and the optimal check schedule built from it."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from reelflow_common.polling.histogram import (
    END_BUCKET,
    FIRST_BUCKET,
    N_BUCKETS,
    Histogram,
    bucket_of,
    edge,
    generic_prior,
    smoothed,
)
from reelflow_common.polling.schedule import Plan, Target, measure, optimal_plan

TARGET = Target(delay_s=10.0, late_fraction=0.05, max_interval_s=60.0, first_quantile=0.01)


def test_buckets_are_log_spaced_and_clamp_at_both_ends() -> None:
    assert bucket_of(0.001) == FIRST_BUCKET == -128  # below 2**-8 s
    assert bucket_of(0.2) == -38  # 2**(-38/16) ≈ 0.193 ≤ 0.2 < 2**(-37/16)
    assert bucket_of(1.0) == 0
    assert bucket_of(2.0) == 16
    assert bucket_of(90.0) == 103  # 2**(103/16) ≈ 86.9 ≤ 90 < 2**(104/16) ≈ 90.5
    assert edge(103) <= 90.0 < edge(104)
    assert bucket_of(10**6) == END_BUCKET - 1 == 223


def test_sub_second_completions_are_learned_and_planned_for() -> None:
    """A compressed stack (``make bench``) finishes tasks in milliseconds: the plan's
    first check must be able to come that soon, not at the 1 s the scheme began at."""
    dist = Histogram.from_counts({bucket_of(0.05): 50.0})
    assert dist.quantile(0.5) == pytest.approx(0.05, rel=0.05)
    assert dist.cdf(0.04) == 0.0
    assert dist.cdf(0.06) == 1.0
    plan = optimal_plan(dist, Target(0.1, 0.05, 0.6, 0.01))
    assert plan.checks[0] < 0.1
    assert Histogram.log_normal(0.2, 0.7).quantile(0.5) == pytest.approx(0.2, rel=0.05)


@pytest.mark.parametrize("k", [FIRST_BUCKET - 1, END_BUCKET])
def test_a_count_outside_the_buckets_is_refused_not_misplaced(k: int) -> None:
    with pytest.raises(ValueError, match=f"no bucket {k}"):
        Histogram.from_counts({k: 1.0})


def test_a_log_normal_has_its_median_and_spread() -> None:
    dist = Histogram.log_normal(90.0, 0.6)

    assert dist.quantile(0.5) == pytest.approx(90.0, rel=0.01)
    assert dist.cdf(90.0) == pytest.approx(0.5, abs=0.005)
    # exp(0.6 * 1.645) ≈ 2.68: the 95th percentile of the simulator-like shape
    assert dist.quantile(0.95) == pytest.approx(90.0 * 2.683, rel=0.02)
    assert all(a <= b for a, b in itertools.pairwise(dist.cdf(t) for t in range(1, 2000, 7)))


def test_a_quantile_of_counts_falls_inside_the_counted_bucket() -> None:
    dist = Histogram.from_counts({bucket_of(100.0): 3.0, bucket_of(200.0): 1.0})

    assert edge(bucket_of(100.0)) <= dist.quantile(0.5) <= edge(bucket_of(100.0) + 1)
    assert dist.quantile(0.0) == pytest.approx(edge(bucket_of(100.0)))
    assert dist.quantile(1.0) == pytest.approx(edge(bucket_of(200.0) + 1))
    assert dist.cdf(150.0) == pytest.approx(0.75)


def test_an_interval_is_spread_over_its_buckets_only_and_sums_to_one() -> None:
    shares = generic_prior().spread(40.0, 60.0)

    assert sum(shares.values()) == pytest.approx(1.0)
    assert min(shares) == bucket_of(40.0)
    assert max(shares) == bucket_of(60.0)


def sample_counts(count: int, seed: int) -> dict[int, float]:
    """``count`` completions of a log-normal (median 90 s, sigma 0.6), counted per bucket."""
    rng = random.Random(seed)
    counts: dict[int, float] = {}
    for _ in range(count):
        k = bucket_of(90.0 * math.exp(0.6 * rng.gauss(0.0, 1.0)))
        counts[k] = counts.get(k, 0.0) + 1.0
    return counts


def mean_bucket(counts: dict[int, float]) -> float:
    return sum(k * c for k, c in counts.items()) / sum(counts.values())


def test_smoothing_fills_the_gaps_of_a_small_sample_and_keeps_its_mass() -> None:
    counts = sample_counts(100, seed=7)
    raw, smooth = Histogram.from_counts(counts), Histogram.from_counts(smoothed(counts))
    middle = range(bucket_of(raw.quantile(0.05)), bucket_of(raw.quantile(0.95)) + 1)

    assert sum(smoothed(counts).values()) == pytest.approx(100.0)
    assert any(counts.get(k, 0.0) == 0.0 for k in middle)  # a hundred leave gaps
    assert all(smooth.masses[k - FIRST_BUCKET] > 0.1 for k in middle)
    # Wider, not moved: the mean in log time stays, the low tail reaches further down.
    assert mean_bucket(smoothed(counts)) == pytest.approx(mean_bucket(counts))
    assert smooth.quantile(0.01) < raw.quantile(0.01)


def widening(counts: dict[int, float]) -> float:
    """How many times wider smoothing makes ``counts``: the ratio of standard deviations
    in log time (the kernel adds its own variance)."""

    def sd(c: dict[int, float]) -> float:
        mean = mean_bucket(c)
        return math.sqrt(sum(n * (k - mean) ** 2 for k, n in c.items()) / sum(c.values()))

    return sd(smoothed(counts)) / sd(counts)


def test_smoothing_narrows_as_the_counts_grow() -> None:
    small, large = widening(sample_counts(100, seed=7)), widening(sample_counts(2000, seed=8))

    # The kernel's width goes with n^(-1/5): at 2,000 it adds about a third of the
    # variance (20^(-2/5)) it adds at 100.
    assert small > 1.15
    assert 1.0 < large < 1.1
    counts = sample_counts(20_000, seed=8)
    raw, smooth = Histogram.from_counts(counts), Histogram.from_counts(smoothed(counts))
    for q in (0.01, 0.05, 0.5, 0.95, 0.99):
        assert smooth.quantile(q) == pytest.approx(raw.quantile(q), rel=0.05)


def test_counts_without_spread_are_not_smoothed() -> None:
    # One bucket's counts (every clip alike), or a single count, have no spread to smooth.
    assert smoothed({bucket_of(60.0): 500.0}) == {bucket_of(60.0): 500.0}
    assert smoothed({bucket_of(60.0): 1.0}) == {bucket_of(60.0): 1.0}


def test_smoothing_keeps_the_mass_inside_the_buckets() -> None:
    edges = {FIRST_BUCKET: 5.0, FIRST_BUCKET + 40: 5.0, END_BUCKET - 1: 5.0}

    spread = smoothed(edges)

    assert min(spread) >= FIRST_BUCKET
    assert max(spread) <= END_BUCKET - 1
    assert sum(spread.values()) == pytest.approx(15.0)
    Histogram.from_counts(spread)  # every bucket it names exists
    # The end buckets take what the kernel carries past them: more than half of their
    # own counts, where the next bucket in gets a share of every count's kernel.
    for end, inner in ((FIRST_BUCKET, FIRST_BUCKET + 1), (END_BUCKET - 1, END_BUCKET - 2)):
        assert spread[end] > 2.5
        assert spread[inner] < 0.2


def test_a_histogram_without_mass_is_refused() -> None:
    with pytest.raises(ValueError, match="not all zero"):
        Histogram((0.0,) * N_BUCKETS)


def test_the_optimal_plan_meets_its_target_within_its_bounds() -> None:
    dist = Histogram.log_normal(90.0, 0.6)

    plan = optimal_plan(dist, TARGET)

    calls, late = measure(dist, plan, TARGET.delay_s)
    assert late <= TARGET.late_fraction
    assert calls == pytest.approx(plan.expected_calls, rel=1e-6)
    assert late == pytest.approx(plan.late_fraction, abs=1e-6)
    assert plan.checks[0] >= dist.quantile(TARGET.first_quantile)
    gaps = [b - a for a, b in itertools.pairwise(plan.checks)]
    assert max(gaps) <= TARGET.max_interval_s + 1e-9
    assert plan.tail_interval_s == TARGET.max_interval_s


@pytest.mark.parametrize(
    ("dist", "target"),
    [
        (Histogram.log_normal(90.0, 0.6), TARGET),
        (Histogram.log_normal(30.0, 0.4), TARGET),
        (generic_prior(), TARGET),
    ],
)
def test_the_first_check_comes_within_the_delay_target_of_the_earliest_plausible_finish(
    dist: Histogram, target: Target
) -> None:
    # The clips that finish before the first check are the ones progress cannot help:
    # at most first_quantile of them may wait longer than the delay target for it.
    earliest = dist.quantile(target.first_quantile)

    plan = optimal_plan(dist, target)
    first = plan.checks[0]

    assert earliest <= first <= earliest + target.delay_s + 1e-9
    # Those clips are late too: the plan's late fraction counts them and still meets the target.
    assert dist.cdf(first - target.delay_s) <= plan.late_fraction <= target.late_fraction


def test_a_looser_delay_target_costs_fewer_calls() -> None:
    dist = Histogram.log_normal(90.0, 0.6)
    costs = [
        optimal_plan(dist, Target(delay, 0.05, 60.0, 0.01)).expected_calls
        for delay in (5.0, 10.0, 20.0, 40.0)
    ]

    assert costs == sorted(costs, reverse=True)
    assert costs[0] > 1.5 * costs[-1]


def test_checks_are_densest_where_completions_are() -> None:
    plan = optimal_plan(Histogram.log_normal(300.0, 0.3), TARGET)

    assert plan.checks[0] > 100.0  # nothing finishes in the first minutes
    near_median = [t for t in plan.checks if 250.0 <= t <= 350.0]
    far_tail = [t for t in plan.checks if 700.0 <= t <= 800.0]
    assert len(near_median) > len(far_tail)


def test_the_tail_of_a_plan_keeps_moving_forward_despite_rounding() -> None:
    plan = Plan((0.1,), 0.1)
    at, seen = 0.1, []
    for _ in range(1000):
        at = plan.next_after(at)
        seen.append(at)

    assert all(b > a for a, b in itertools.pairwise(seen))
    assert seen[-1] == pytest.approx(100.1)


def test_a_plan_refuses_times_that_do_not_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Plan((10.0, 10.0), 5.0)
