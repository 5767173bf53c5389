"""Exact evaluation on hand-computed cases, and the reference schedules as documented."""

from __future__ import annotations

import pytest

from reelflow_common.backoff import Backoff
from reelflow_common.polling.evaluate import (
    evaluate,
    evaluate_batched,
    evaluate_webhooks,
    follow_clip,
    linear_progress,
    percentile,
    power_progress,
    staggered_starts,
)
from reelflow_common.polling.plan import ClipProfile, FixedLadderPlanner, PollPlanner
from reelflow_common.polling.reference import FixedSchedulePlanner, sdk_planner, seed_planner
from reelflow_common.polling.schedule import Plan

ANY = ClipProfile("any:1@1")
EVERY_TEN = FixedSchedulePlanner(Plan((10.0, 20.0, 30.0), 10.0))


def check_times(planner: PollPlanner, until_s: float) -> list[float]:
    times = [planner.first_check_s(ANY)]
    while times[-1] < until_s:
        times.append(times[-1] + planner.next_check_s(ANY, elapsed_s=times[-1], progress=None))
    return times


def test_the_sdk_polls_at_one_second_then_half_a_second_later_then_1_5x_capped_at_10() -> None:
    backoff = [1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 11.390625, 17.0859375, 25.62890625]
    every_ten = [35.62890625, 45.62890625, 55.62890625, 65.62890625]

    assert check_times(sdk_planner(), 60.0) == pytest.approx(backoff + every_ten)


def test_the_seed_polls_every_2_s_below_two_minutes_then_the_browser_every_15_s() -> None:
    assert check_times(seed_planner(), 170.0) == pytest.approx(
        [2.0 * k for k in range(1, 60)] + [135.0, 150.0, 165.0, 180.0]
    )


def test_the_old_ladder_waits_20_s_then_1_5x_capped_at_120_s() -> None:
    ladder = FixedLadderPlanner(Backoff(first_s=20.0, cap_s=120.0, factor=1.5))

    assert check_times(ladder, 500.0) == pytest.approx(
        [20.0, 50.0, 95.0, 162.5, 263.75, 383.75, 503.75]
    )


def test_percentiles_are_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]

    assert [percentile(values, q) for q in (0, 20, 21, 50, 95, 100)] == [1, 1, 2, 3, 5, 5]


def test_calls_and_delays_of_a_fixed_schedule_by_hand() -> None:
    # Checks at 10, 20, 30, 40, …: 5 s → seen at 10 (1 call), 10 s → at 10 (1),
    # 15 s → at 20 (2), 35 s → at 40 (4). Delays 5, 0, 5, 5.
    summary = evaluate(EVERY_TEN, ANY, [5.0, 10.0, 15.0, 35.0])

    assert summary.calls_per_clip == 2.0
    assert summary.requests_per_clip == 2.0
    assert (summary.p50_delay_s, summary.p95_delay_s, summary.max_delay_s) == (5.0, 5.0, 5.0)
    assert summary.unseen == 0


def test_a_clip_still_running_at_the_maximum_age_is_counted_unseen() -> None:
    result = follow_clip(EVERY_TEN, ANY, 100.0, max_age_s=50.0)

    assert (result.calls, result.delay_s) == (5, None)


class ProgressRecorder(FixedSchedulePlanner):
    """The schedule above, remembering what it was told."""

    def __init__(self) -> None:
        super().__init__(EVERY_TEN.schedule)
        self.told: list[tuple[float, int | None]] = []
        self.completions: list[tuple[float, float | None, int | None]] = []

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        self.told.append((elapsed_s, progress))
        return super().next_check_s(profile, elapsed_s=elapsed_s, progress=progress)

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        self.completions.append((elapsed_s, since_s, since_progress))


def test_the_planner_is_told_the_progress_and_learns_the_bracketing_checks() -> None:
    recorder = ProgressRecorder()

    follow_clip(recorder, ANY, 25.0, progress=linear_progress, learn=True)

    assert recorder.told == [(10.0, 40), (20.0, 80)]
    assert recorder.completions == [(30.0, 20.0, 80)]


def test_progress_models() -> None:
    assert linear_progress(30.0, 90.0) == 33
    assert linear_progress(200.0, 90.0) == 99
    assert power_progress(0.5)(25.0, 100.0) == 50
    assert power_progress(2.0)(50.0, 100.0) == 25


def test_checks_due_within_the_window_share_a_request_by_hand() -> None:
    # Clip A submitted at 0, clip B at 0.3, both finish 15 s after submission.
    # Request 1 opens at 10 (A), takes B's check at 10.3, goes out at 10.5: both running.
    # Request 2 opens at 20 (A), takes B at 20.3, goes out at 20.5: A 5.5 s late, B 5.2 s.
    summary = evaluate_batched(
        EVERY_TEN, ANY, [15.0, 15.0], [0.0, 0.3], window_s=0.5, batch_size=10
    )

    assert summary.requests_per_clip == 1.0
    assert summary.calls_per_clip == 2.0
    assert summary.p50_delay_s == pytest.approx(5.2)
    assert summary.max_delay_s == pytest.approx(5.5)


def test_a_full_batch_goes_out_at_once() -> None:
    # Same clips, batches of two: out at 10.3 and at 20.3 (A 5.3 s late, B 5.0 s).
    summary = evaluate_batched(EVERY_TEN, ANY, [15.0, 15.0], [0.0, 0.3], window_s=0.5, batch_size=2)

    assert summary.requests_per_clip == 1.0
    assert summary.p50_delay_s == pytest.approx(5.0)
    assert summary.max_delay_s == pytest.approx(5.3)


def test_checks_too_far_apart_do_not_share() -> None:
    summary = evaluate_batched(
        EVERY_TEN, ANY, [15.0, 15.0], [0.0, 3.0], window_s=0.5, batch_size=10
    )

    assert summary.requests_per_clip == summary.calls_per_clip == 2.0
    # A check alone still waits out the window for company: seen at 20.5 and 23.5.
    assert summary.max_delay_s == pytest.approx(5.5)


def test_staggered_starts_keep_the_asked_number_in_flight() -> None:
    starts = staggered_starts(5, in_flight=10, mean_latency_s=100.0)

    assert starts == pytest.approx([0.0, 10.0, 20.0, 30.0, 40.0])


def test_webhooks_by_hand() -> None:
    safety_net = FixedSchedulePlanner(Plan((100.0,), 50.0))
    # 10 s: the webhook (at 11) beats the first check: 1 call, 1 s late.
    # 120 s: checked at 100 (running), the webhook at 121 beats 150: 2 calls, 1 s late.
    delivered = evaluate_webhooks(safety_net, ANY, [10.0, 120.0], delivery_s=1.0)
    # Lost webhooks: only the safety net: 10 s → seen at 100; 120 s → at 150.
    lost = evaluate_webhooks(safety_net, ANY, [10.0, 120.0], delivered=lambda _: False)

    assert delivered.calls_per_clip == 1.5
    assert delivered.max_delay_s == 1.0
    assert lost.calls_per_clip == 1.5
    assert (lost.p50_delay_s, lost.max_delay_s) == (30.0, 90.0)
