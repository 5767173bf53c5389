"""Token buckets: a burst at once, then a steady rate; one per key, bounded in memory."""

from __future__ import annotations

import pytest

from reelflow_common.tokenbucket import KeyedBuckets, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_at_once_and_the_next_is_told_when_to_come_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=4, burst=3, clock=clock)

    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.25)


def test_tokens_come_back_at_the_rate_and_never_above_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2, burst=2, clock=clock)
    bucket.take()
    bucket.take()

    clock.now += 0.5
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)

    clock.now += 3600
    assert bucket.full()
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_a_refused_take_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1, burst=1, clock=clock)
    bucket.take()
    for _ in range(10):
        bucket.take()

    clock.now += 1.0
    assert bucket.take() == 0.0


def test_a_token_given_back_can_be_taken_again_but_never_above_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=0.001, burst=2, clock=clock)
    bucket.take()
    bucket.take()

    bucket.give_back()  # the action it was taken for did not happen
    assert bucket.take() == 0.0
    bucket.give_back()
    bucket.give_back()
    bucket.give_back()
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(1000)]


def test_a_clock_going_back_adds_no_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1, burst=1, clock=clock)
    bucket.take()
    clock.now -= 50

    assert bucket.take() == pytest.approx(1.0)


@pytest.mark.parametrize(("rate_per_s", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_that_could_never_allow_anything_is_refused(rate_per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(rate_per_s=rate_per_s, burst=burst)


def test_each_key_has_its_own_bucket() -> None:
    buckets = KeyedBuckets(rate_per_s=1, burst=1, max_keys=10, clock=FakeClock())

    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_past_max_keys_full_buckets_go_first_then_the_least_recently_used() -> None:
    clock = FakeClock()
    buckets = KeyedBuckets(rate_per_s=1, burst=2, max_keys=2, clock=clock)
    buckets.take("flooded")
    buckets.take("flooded")
    buckets.take("idle")
    clock.now += 10  # "idle" is full again; "flooded" is too, and both may go
    buckets.take("flooded")
    buckets.take("flooded")
    buckets.take("new")  # past max_keys: the full "idle" goes, the emptied "flooded" stays

    assert len(buckets) == 2
    assert buckets.take("flooded") > 0

    buckets.take("newer")  # nothing is full: the least recently used ("new") goes
    assert len(buckets) == 2
    assert buckets.take("flooded") > 0
