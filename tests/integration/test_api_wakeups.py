"""An api replica's ``?wait=`` wakeups come from ``project.finished`` under either routing key:
the project's (``project.finished.<id>``, this release) and the type alone (a publisher of the
release before, during an upgrade); no other event wakes a waiter."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from reelflow_api.wakeups import Wakeups, subscribed
from reelflow_common.broker import Publisher
from reelflow_common.domain import Counts, ProjectStatus
from reelflow_common.messages import ProjectFinished
from reelflow_common.topology import Topology
from tests.builders import clip_updated
from tests.waiting import DEADLINE_S

pytestmark = pytest.mark.integration

COUNTS = Counts(total_clips=1, completed=1, pending=0, failed=0)


def finished(project_id: str) -> ProjectFinished:
    return ProjectFinished(
        project_id=project_id, tenant_id="t1", seq=2, status=ProjectStatus.COMPLETED, counts=COUNTS
    )


async def test_project_finished_under_either_routing_key_wakes_its_waiters_and_nothing_else(
    amqp_connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology
) -> None:
    wakeups = Wakeups()
    publisher = Publisher(channel, topology, timeout_s=5)
    events = await channel.get_exchange(topology.events_exchange, ensure=False)
    queue_name = topology.wakeups_queue(uuid.uuid4().hex)
    async with subscribed(amqp_connection, channel, topology, wakeups, queue_name=queue_name):
        with wakeups.watching("p1") as woken:
            await publisher.publish_event(clip_updated(1, project_id="p1"))
            await publisher.publish_event(finished("p1"))  # project.finished.p1
            await asyncio.wait_for(woken.wait(), DEADLINE_S)

        with wakeups.watching("p2") as woken:
            old = finished("p2")
            await events.publish(
                aio_pika.Message(old.model_dump_json().encode(), type=old.message_type),
                routing_key=old.message_type,  # a publisher of the release before
            )
            await asyncio.wait_for(woken.wait(), DEADLINE_S)

        # A clip's change is no project's end: it never reaches the queue.
        with wakeups.watching("p3") as woken, wakeups.watching("p4") as after:
            await publisher.publish_event(clip_updated(1, project_id="p3"))
            await publisher.publish_event(finished("p4"))  # delivered after it, in order
            await asyncio.wait_for(after.wait(), DEADLINE_S)
            assert not woken.is_set()
