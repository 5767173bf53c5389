"""The api's waiters by project: who is woken, and that none outlives its wait."""

from __future__ import annotations

from reelflow_api.wakeups import Wakeups


def test_an_event_wakes_the_waiters_of_its_project_only() -> None:
    wakeups = Wakeups()
    with (
        wakeups.watching("p1") as first,
        wakeups.watching("p1") as second,
        wakeups.watching("p2") as other,
    ):
        assert wakeups.wake("p1") == 2
        assert wakeups.wake("p3") == 0

        assert [first.is_set(), second.is_set()] == [True, True]
        assert not other.is_set()


def test_a_waiter_is_forgotten_when_its_wait_ends() -> None:
    wakeups = Wakeups()
    with wakeups.watching("p1"):
        with wakeups.watching("p1"):
            assert wakeups.waiting() == 2
        assert wakeups.waiting() == 1
    assert wakeups.waiting() == 0
    assert wakeups.wake("p1") == 0


def test_after_a_reconnect_every_waiter_is_woken() -> None:
    wakeups = Wakeups()
    with wakeups.watching("p1") as first, wakeups.watching("p2") as second:
        wakeups.wake_all()

        assert [first.is_set(), second.is_set()] == [True, True]
