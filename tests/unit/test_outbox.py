"""A connection's outbox stays bounded whatever the client does while it does not read."""

from __future__ import annotations

import asyncio
import gc

from prometheus_client import REGISTRY

from reelflow_notifier.outbox import CatchUp, Notice, Outbox, Snapshot, Start
from tests.builders import clip_updated


def drain(outbox: Outbox) -> list[object]:
    async def take_all() -> list[object]:
        return [await outbox.get() for _ in range(len(outbox))]

    return asyncio.run(take_all())


def test_subscribing_again_and_again_queues_one_start_per_project() -> None:
    outbox = Outbox(max_backlog=10)

    for n in range(1000):
        outbox.put(f"p{n % 3}", Start(after_seq=n))

    assert len(outbox) == 3
    # Each Start replaces the one before it: the latest of each project, in the order put.
    assert drain(outbox) == [("p1", Start(997)), ("p2", Start(998)), ("p0", Start(999))]


def test_catching_up_again_and_again_queues_one_catch_up_per_project() -> None:
    outbox = Outbox(max_backlog=10)

    for _ in range(1000):
        outbox.put("p1", CatchUp())
        outbox.put("p2", CatchUp())

    assert drain(outbox) == [("p1", CatchUp()), ("p2", CatchUp())]


def test_a_catch_up_behind_a_pending_start_adds_nothing() -> None:
    outbox = Outbox(max_backlog=10)
    outbox.put("p1", Start())

    outbox.put("p1", CatchUp())

    assert drain(outbox) == [("p1", Start())]


def test_a_catch_up_after_the_pending_one_was_sent_is_queued_again() -> None:
    outbox = Outbox(max_backlog=10)
    outbox.put("p1", CatchUp())
    drain(outbox)

    outbox.put("p1", CatchUp())

    assert len(outbox) == 1


def test_a_new_start_drops_what_the_project_had_queued_and_frees_the_backlog() -> None:
    outbox = Outbox(max_backlog=2)
    outbox.put("p1", Start())
    assert outbox.put_event(clip_updated(1))
    assert outbox.put_event(clip_updated(2))
    assert not outbox.put_event(clip_updated(3))  # full

    outbox.put("p1", Start(after_seq=2))

    third = clip_updated(3)
    assert outbox.put_event(third)
    assert drain(outbox) == [("p1", Start(after_seq=2)), ("p1", third)]


def test_a_reset_leaves_one_snapshot_per_project_and_the_notices() -> None:
    outbox = Outbox(max_backlog=5)
    outbox.notice({"type": "error", "message": "bad"})
    outbox.put("p1", CatchUp())
    outbox.put_event(clip_updated(4, project_id="p2"))

    outbox.reset(["p1", "p2", "p1"], reason="slow_reader")
    outbox.put("p1", CatchUp())  # behind the snapshot: nothing more

    assert drain(outbox) == [
        Notice({"type": "error", "message": "bad"}),
        ("p1", Snapshot("slow_reader")),
        ("p2", Snapshot("slow_reader")),
    ]


def test_notices_beyond_the_backlog_are_dropped() -> None:
    outbox = Outbox(max_backlog=3)

    for n in range(100):
        outbox.notice({"type": "error", "message": str(n)})

    assert len(outbox) == 3


def backlog() -> tuple[float, float]:
    total = REGISTRY.get_sample_value("reelflow_ws_backlog_events")
    slowest = REGISTRY.get_sample_value("reelflow_ws_backlog_max_events")
    assert total is not None
    assert slowest is not None
    return total, slowest


def test_the_backlog_gauges_count_the_events_queued_for_every_client() -> None:
    gc.collect()  # outboxes of earlier tests, gone
    assert backlog() == (0, 0)
    slow, quick = Outbox(max_backlog=10), Outbox(max_backlog=10)
    for seq in range(1, 4):
        slow.put_event(clip_updated(seq))
    quick.put_event(clip_updated(1, project_id="p2"))

    assert backlog() == (4, 3)
    drain(slow)
    assert backlog() == (1, 1)
    del slow, quick
    gc.collect()
    assert backlog() == (0, 0)
