"""``Publisher.send``'s arguments, before any broker is involved."""

from __future__ import annotations

import asyncio

import pytest

from reelflow_common.broker import Publisher, PublishError, confirmed_together
from reelflow_common.messages import CheckHintedTasks
from reelflow_common.topology import SUBMIT_CLIP, Topology


async def test_a_delay_to_a_named_queue_is_refused_not_dropped() -> None:
    publisher = Publisher(None, Topology(prefix="t."), timeout_s=1.0)
    message = CheckHintedTasks(project_id="p1", task_uuids=["9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f"])

    with pytest.raises(ValueError, match="no wait queues"):
        await publisher.send(SUBMIT_CLIP, message, delay_s=5.0, to="t.submitter.lane.x")


async def test_publishes_confirmed_together_overlap_and_the_first_failure_is_raised() -> None:
    """Each waits for the other to have started: one after the other, neither would end."""
    started = [asyncio.Event(), asyncio.Event()]
    ended: list[int] = []

    async def publish(me: int, fails: bool) -> None:
        started[me].set()
        await started[1 - me].wait()
        ended.append(me)
        if fails:
            raise PublishError(f"publish {me} not confirmed")

    async with asyncio.timeout(5.0):
        await confirmed_together(publish(0, False), publish(1, False))
    assert sorted(ended) == [0, 1]

    started = [asyncio.Event(), asyncio.Event()]
    ended.clear()
    with pytest.raises(PublishError, match="publish 0"):
        async with asyncio.timeout(5.0):
            await confirmed_together(publish(0, True), publish(1, False))
    assert sorted(ended) == [0, 1]  # the other one ran to its end, not cancelled
