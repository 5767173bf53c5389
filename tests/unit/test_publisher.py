"""``Publisher.send``'s arguments, before any broker is involved."""

from __future__ import annotations

import pytest

from reelflow_common.broker import Publisher
from reelflow_common.messages import CheckHintedTasks
from reelflow_common.topology import SUBMIT_CLIP, Topology


async def test_a_delay_to_a_named_queue_is_refused_not_dropped() -> None:
    publisher = Publisher(None, Topology(prefix="t."), timeout_s=1.0)
    message = CheckHintedTasks(project_id="p1", task_uuids=["9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f"])

    with pytest.raises(ValueError, match="no wait queues"):
        await publisher.send(SUBMIT_CLIP, message, delay_s=5.0, to="t.submitter.lane.x")
