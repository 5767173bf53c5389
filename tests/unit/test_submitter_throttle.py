"""The submitter's throttle: one step of its backoff per moment of overload, not per 429."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reelflow_common.backoff import Backoff
from reelflow_submitter.throttle import RunwareThrottle


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def throttle(clock: Clock) -> RunwareThrottle:
    return RunwareThrottle(Backoff(first_s=2, cap_s=60, jitter=0), clock)


def test_the_429s_of_requests_sent_before_the_pause_leave_it_as_it_is() -> None:
    clock = Clock()
    limits = throttle(clock)

    first = limits.tripped()
    # The other submits of the same shared request, or sent beside it, answer 429 too.
    again = [limits.tripped() for _ in range(15)]

    assert first == clock.now + timedelta(seconds=2)
    assert again == [None] * 15  # nothing new to tell the other replicas
    assert limits.paused_until == first


def test_a_429_after_the_pause_pauses_longer_and_an_accepted_submit_ends_the_streak() -> None:
    clock = Clock()
    limits = throttle(clock)
    limits.tripped()
    clock.now += timedelta(seconds=2)  # the pause is over; the next submit is refused too

    second = limits.tripped()
    assert second is not None
    clock.now = second
    limits.accepted()
    third = limits.tripped()

    assert second == datetime(2026, 12, 4, tzinfo=UTC) + timedelta(seconds=2 + 4)
    assert third == second + timedelta(seconds=2)


def test_a_pause_another_replica_told_of_does_not_swallow_this_replicas_own_429() -> None:
    clock = Clock()
    limits = throttle(clock)
    limits.told(clock.now + timedelta(seconds=30))

    own = limits.tripped()

    # Its own step of the backoff, told to the others; the longer pause holds here.
    assert own == clock.now + timedelta(seconds=2)
    assert limits.paused_until == clock.now + timedelta(seconds=30)
    assert limits.tripped() is None
