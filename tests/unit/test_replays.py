"""Gap fills of one project's watchers share a read of its event log, when that hides nothing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from reelflow_common.messages import Event
from reelflow_common.store import ProjectStore
from reelflow_notifier.replays import Replays


class SlowLog:
    """``events_after`` that waits for ``release`` and counts its reads."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []
        self.release = asyncio.Event()

    async def events_after(self, project_id: str, after_seq: int) -> list[Event] | None:
        self.reads.append((project_id, after_seq))
        await self.release.wait()
        return []


def replays_of(log: SlowLog) -> Replays:
    return Replays(cast(ProjectStore, cast(Any, log)))


def test_a_thousand_watchers_filling_the_same_gap_make_one_read() -> None:
    async def scenario() -> tuple[list[tuple[str, int]], int]:
        log = SlowLog()
        replays = replays_of(log)
        fills = [asyncio.create_task(replays.events_after("p", 4, seen_seq=6)) for _ in range(1000)]
        await asyncio.sleep(0)
        log.release.set()
        answers = await asyncio.gather(*fills)
        assert answers == [[]] * 1000
        return log.reads, replays.shared

    reads, shared = asyncio.run(scenario())

    assert reads == [("p", 4)]
    assert shared == 999


def test_a_read_started_on_an_older_event_or_without_one_is_not_shared() -> None:
    async def scenario() -> list[tuple[str, int]]:
        log = SlowLog()
        replays = replays_of(log)
        first = asyncio.create_task(replays.events_after("p", 4, seen_seq=6))
        await asyncio.sleep(0)
        # Revealed by seq 7: the read started on seq 6 may predate seq 7's write.
        newer = asyncio.create_task(replays.events_after("p", 4, seen_seq=7))
        # A catch-up has no event to vouch for the read's age.
        catch_up = asyncio.create_task(replays.events_after("p", 4))
        other_project = asyncio.create_task(replays.events_after("q", 4, seen_seq=6))
        await asyncio.sleep(0)
        log.release.set()
        await asyncio.gather(first, newer, catch_up, other_project)
        return log.reads

    assert asyncio.run(scenario()) == [("p", 4), ("p", 4), ("p", 4), ("q", 4)]


def test_a_watcher_leaving_mid_read_does_not_cancel_the_others() -> None:
    async def scenario() -> list[Event] | None:
        log = SlowLog()
        replays = replays_of(log)
        leaving = asyncio.create_task(replays.events_after("p", 4, seen_seq=6))
        staying = asyncio.create_task(replays.events_after("p", 4, seen_seq=6))
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        log.release.set()
        return await staying

    assert asyncio.run(scenario()) == []
