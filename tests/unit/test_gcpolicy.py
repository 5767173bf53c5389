"""The notifier's GC policy: open sockets' objects frozen, closed sockets' cycles reclaimed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reelflow_notifier.gcpolicy import GcPolicy


class Cycle:
    """Stands for a socket's objects: a reference cycle, as a task and its coroutine make."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_new_sockets_objects_are_frozen_out_of_the_passes() -> None:
    policy = GcPolicy(min_closed=4)
    held = [Cycle() for _ in range(10)]
    for _ in held:
        policy.opened()
    frozen_before = gc.get_freeze_count()

    policy.tick()

    assert gc.get_freeze_count() >= frozen_before + len(held)
    assert policy.freezes == 1
    policy.tick()  # nothing opened since: nothing to do
    assert policy.freezes == 1


def test_closed_sockets_cycles_are_reclaimed_once_enough_closed() -> None:
    policy = GcPolicy(min_closed=4)
    sockets = [Cycle() for _ in range(8)]
    for _ in sockets:
        policy.opened()
    policy.tick()  # frozen: no pass sees them any more
    gone = weakref.ref(sockets[0])
    del sockets[:3]
    for _ in range(3):
        policy.closed()

    policy.tick()
    gc.collect()
    assert gone() is not None, "frozen cycles are left alone until enough sockets closed"

    policy.closed()  # the fourth: a quarter of those open, at least min_closed
    policy.tick()
    assert gone() is None
    assert policy.full_passes == 1
    assert gc.get_freeze_count() > 0, "what is still open is frozen again"


def test_the_reclaim_threshold_grows_with_the_sockets_open() -> None:
    policy = GcPolicy(min_closed=2)
    for _ in range(100):
        policy.opened()
    policy.tick()
    for _ in range(19):
        policy.closed()
    policy.tick()
    assert policy.full_passes == 0  # 19 closed, 81 open: under a quarter
    policy.closed()  # 20 closed, 80 open
    policy.tick()
    assert policy.full_passes == 1
