"""The API's lanes: whose clips skip the sorter, where a publish goes when a lane is gone."""

from __future__ import annotations

from reelflow_api.lanes import KnownLanes, send_submits
from reelflow_common.broker import Publisher
from reelflow_common.broker.publisher import PublishError, Unroutable
from reelflow_common.messages import Message
from reelflow_common.topology import SUBMIT_CLIP, Topology
from tests.integration.sample_messages import submit_clip

TOPOLOGY = Topology.named("t.")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Broker(Publisher):
    """Lanes that exist (or not), and task uuids the broker will not confirm; what it took."""

    def __init__(self, lanes: set[str], unconfirmed: frozenset[str] = frozenset()) -> None:
        super().__init__(None, TOPOLOGY, timeout_s=1)
        self.lanes = lanes
        self.unconfirmed = unconfirmed
        self.queued: list[tuple[str, str]] = []  # (queue, task uuid)

    async def send(
        self,
        work_queue: str,
        message: Message,
        *,
        delay_s: float | None = None,
        to: str | None = None,
    ) -> None:
        assert work_queue == SUBMIT_CLIP
        assert delay_s is None
        task_uuid = message.model_dump()["task_uuid"]
        if to is not None and to not in self.lanes:
            raise Unroutable(to)
        if task_uuid in self.unconfirmed:
            raise PublishError("not confirmed")
        self.queued.append((to or TOPOLOGY.queue(work_queue), task_uuid))


def test_a_lane_is_known_for_its_ttl_after_each_announcement() -> None:
    clock = _Clock()
    lanes = KnownLanes(60, clock=clock)
    assert not lanes.consumed("a")
    lanes.announced("a")
    clock.now += 59
    assert lanes.consumed("a")
    lanes.announced("a")  # a replica's periodic announcement
    clock.now += 59
    assert lanes.consumed("a")
    clock.now += 2
    assert not lanes.consumed("a")  # no submitter said so for too long: through the sorter


def test_a_full_list_of_lanes_makes_room_from_expired_ones_only() -> None:
    clock = _Clock()
    lanes = KnownLanes(60, max_entries=2, clock=clock)
    lanes.announced("a")
    lanes.announced("b")
    lanes.announced("c")  # no room: c's clips keep going through the sorter
    assert (lanes.consumed("a"), lanes.consumed("b"), lanes.consumed("c")) == (True, True, False)
    clock.now += 61
    lanes.announced("c")
    assert lanes.consumed("c")


async def test_clips_go_to_a_known_lane_and_to_the_shared_queue_otherwise() -> None:
    lanes = KnownLanes(60)
    lanes.announced("tenant-a")
    broker = _Broker({TOPOLOGY.lane_queue("tenant-a")})
    submits = [submit_clip("a1"), submit_clip("b1", tenant_id="tenant-b"), submit_clip("a2")]

    assert await send_submits(broker, lanes, submits) == []

    assert sorted(broker.queued) == sorted(
        [
            (TOPOLOGY.lane_queue("tenant-a"), "a1"),
            (TOPOLOGY.lane_queue("tenant-a"), "a2"),
            (TOPOLOGY.queue(SUBMIT_CLIP), "b1"),
        ]
    )


async def test_a_lane_gone_sends_its_clips_to_the_shared_queue_and_an_outage_reports_its_own() -> (
    None
):
    lanes = KnownLanes(60)
    lanes.announced("tenant-a")
    broker = _Broker(set(), unconfirmed=frozenset({"a2"}))
    submits = [submit_clip("a1"), submit_clip("a2"), submit_clip("a3")]

    failed = await send_submits(broker, lanes, submits)

    # Nothing lost: the unconfirmed one is reported (its lease is expired for the reconciler).
    assert [message.model_dump()["task_uuid"] for message in failed] == ["a2"]
    assert sorted(broker.queued) == [
        (TOPOLOGY.queue(SUBMIT_CLIP), "a1"),
        (TOPOLOGY.queue(SUBMIT_CLIP), "a3"),
    ]
    assert not lanes.consumed("tenant-a")
