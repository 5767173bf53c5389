"""``reelflow-admin dlq``'s names of queues: no broker needed."""

from __future__ import annotations

import pytest

from reelflow_common.admin.dlq import work_queues
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import CHECK_CLIP, STORE_VIDEO, WORK_QUEUES, Topology

TOPOLOGY = Topology.from_settings(TopologySettings(amqp_prefix="t1."))


@pytest.mark.parametrize(
    "name",
    [
        "poller.check_clip",
        "poller.check_clip.dlq",
        "t1.poller.check_clip",
        "t1.poller.check_clip.dlq",  # as dlq list prints it
    ],
)
def test_a_queue_is_taken_as_dlq_list_prints_it_or_as_its_work_queue(name: str) -> None:
    assert work_queues(TOPOLOGY, name) == (CHECK_CLIP,)


def test_an_unknown_queue_is_refused_with_the_names_that_are_valid() -> None:
    with pytest.raises(ValueError, match="unknown queue") as refused:
        work_queues(TOPOLOGY, "t2.poller.check_clip.dlq")

    message = str(refused.value)
    assert message.startswith("unknown queue 't2.poller.check_clip.dlq'; one of: ")
    assert ", ".join(WORK_QUEUES) in message
    assert ", ".join(f"t1.{work_queue}.dlq" for work_queue in WORK_QUEUES) in message
    assert work_queues(TOPOLOGY, None) == WORK_QUEUES
    assert work_queues(TOPOLOGY, f"t1.{STORE_VIDEO}.dlq") == (STORE_VIDEO,)
