"""``Publisher.send``'s arguments, before any broker is involved."""

from __future__ import annotations

import asyncio

import pytest

from reelflow_common.broker import Publisher, PublishError, confirmed_together
from reelflow_common.messages import CheckHintedTasks
from reelflow_common.topology import SUBMIT_CLIP, Topology


async def test_a_delay_to_a_named_queue_is_refused_not_dropped() -> None:
    publisher = Publisher(None, Topology.named("t."), timeout_s=1.0)
    message = CheckHintedTasks(project_id="p1", task_uuids=["9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f"])

    with pytest.raises(ValueError, match="no wait queues"):
        await publisher.send(SUBMIT_CLIP, message, delay_s=5.0, to="t.submitter.lane.x")


async def test_publishes_confirmed_together_overlap_and_the_first_failure_is_raised() -> None:
    """Each waits for the other to have started: one after the other, neither would end."""
    started = [asyncio.Event(), asyncio.Event()]
    ended: list[int] = []

    async def publish(me: int) -> None:
        started[me].set()
        await started[1 - me].wait()
        ended.append(me)

    async with asyncio.timeout(5.0):
        await confirmed_together(publish(0), publish(1))
    assert sorted(ended) == [0, 1]


async def test_a_failed_publish_does_not_cut_the_others_short() -> None:
    """The other publish is still waiting when the first one fails: it runs to its end."""
    failing = asyncio.Event()
    ended: list[str] = []

    async def fails() -> None:
        failing.set()
        raise PublishError("check not confirmed")

    async def confirmed_after_the_failure() -> None:
        await failing.wait()
        await asyncio.sleep(0)  # one more turn: a caller that did not wait has returned
        ended.append("events")

    with pytest.raises(PublishError, match="check not confirmed"):
        async with asyncio.timeout(5.0):
            await confirmed_together(fails(), confirmed_after_the_failure())
    assert ended == ["events"]


async def test_when_both_fail_the_first_is_raised_and_names_the_second() -> None:
    async def fails(what: str) -> None:
        raise PublishError(f"{what} not confirmed")

    with pytest.raises(PublishError, match="check not confirmed") as raised:
        await confirmed_together(fails("check"), fails("events"))
    assert any("events not confirmed" in note for note in raised.value.__notes__)
