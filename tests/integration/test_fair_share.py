"""Fair share between tenants, through the submitter's main against the simulator.

Ground truth is the order in which the simulator first saw each task. A tenant
with a long backlog must not delay a tenant that sends a few clips after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from reelflow_common.broker import amqp_channel
from reelflow_common.broker.consume import first_handling
from reelflow_common.commands import send_all, submit_command
from reelflow_common.domain import ClipRequest
from reelflow_common.messages import SubmitClip
from reelflow_common.store import ApiKeyStore, NewProject, Project
from reelflow_common.topology import SUBMIT_CLIP, declare_lane
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.lanes import Lanes, LaneSorter
from reelflow_submitter.main import main
from reelflow_submitter.settings import Settings
from tests.integration.api_helpers import Api
from tests.integration.worker_helpers import (
    FAST_LADDERS,
    World,
    running,
    runware_settings,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

BACKLOG_PROJECTS = 4
SCENES = 50


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> Settings:
    settings: Settings = settings_for(
        Settings,
        http_host="127.0.0.1",
        http_port=0,
        # One submit at a time per tenant and two in all: the backlog is the bottleneck.
        submit_concurrency=2,
        tenant_submit_concurrency=1,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return settings


async def project_of(world: World, tenant_id: str, scenes: int) -> Project:
    new = NewProject(
        tenant_id=tenant_id,
        title=f"{tenant_id}'s story",
        model="google:3@3",
        scenes=[ClipRequest(prompt=f"scene {i}", duration=4) for i in range(scenes)],
    )
    return (await world.projects.create(new)).project


async def queue_every_clip(world: World, project: Project) -> None:
    commands = [submit_command(project, clip.scene_index) for clip in project.clips]
    assert not await send_all(world.publisher, SUBMIT_CLIP, commands)


async def test_a_small_tenant_is_submitted_before_most_of_a_big_tenants_backlog(
    world: World, settings: Settings, runware_sim: RunningSimulator
) -> None:
    # Tenant A's 200 clips are all queued before tenant B's 5: a FIFO would submit B last.
    big = [await project_of(world, "tenant-a", SCENES) for _ in range(BACKLOG_PROJECTS)]
    for project in big:
        await queue_every_clip(world, project)
    small = await project_of(world, "tenant-b", 5)
    await queue_every_clip(world, small)
    backlog = BACKLOG_PROJECTS * SCENES

    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop):

        async def small_submitted() -> bool:
            seen = {task["task_uuid"] for task in await runware_sim.tasks()}
            return all(clip.task_uuid in seen for clip in small.clips)

        await eventually(small_submitted, "tenant B's clips at Runware", 60)
        order = [task["task_uuid"] for task in await runware_sim.tasks()]

    positions = sorted(order.index(clip.task_uuid) for clip in small.clips)
    print(f"tenant B's clips were submitted at positions {positions} of {backlog + 5}")
    # Lanes served in turn: B waits for a handful of A's clips, not for A's backlog.
    assert positions[-1] < backlog // 4, positions


async def test_a_lane_left_with_clips_is_served_by_a_replica_that_starts_later(
    world: World, settings: Settings, runware_sim: RunningSimulator, mongo_db: Any
) -> None:
    # What a replica that sorted these clips and then died leaves behind: a lane with
    # messages, and no one to announce it. The tenants collection names it.
    tenant_id = await ApiKeyStore(mongo_db).create_tenant("acme")
    project = await dataclasses.replace(world, tenant_id=tenant_id).new_project(
        "scene one", "scene two", "scene three"
    )
    lane = await declare_lane(world.channel, world.topology, tenant_id)
    for clip in project.clips:
        command = submit_command(project, clip.scene_index)
        body = command.model_dump_json().encode()
        await world.channel.default_exchange.publish(
            aio_pika.Message(body, type=command.message_type), routing_key=lane
        )

    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop):

        async def all_processing() -> bool:
            stored = await world.project(project.id)
            return all(clip.status == "processing" for clip in stored.clips)

        await eventually(all_processing, "the lane's clips submitted")

    submitted = {task["task_uuid"] for task in await runware_sim.tasks()}
    assert {clip.task_uuid for clip in project.clips} <= submitted


async def test_a_sorters_copy_of_a_redelivered_submit_is_never_handled_as_the_first(
    world: World, settings: Settings
) -> None:
    project = await world.new_project("scene one", "scene two")
    again, fresh = (submit_command(project, clip.scene_index) for clip in project.clips)
    shared = world.topology.queue(SUBMIT_CLIP)
    await world.publisher.send(SUBMIT_CLIP, again)
    # A sorter took it and lost its channel before its ack (it may have put a copy in the
    # lane already): the broker delivers it again.
    async with amqp_channel(world.connection) as channel:
        taken = await (await channel.get_queue(shared)).get(no_ack=False)
        assert taken.message_id == again.message_id
    await world.publisher.send(SUBMIT_CLIP, fresh)
    first: dict[str, bool] = {}
    stop = asyncio.Event()

    async def lane_handler(message: SubmitClip) -> None:
        first[message.message_id] = first_handling()

    async with amqp_channel(world.connection) as lane_channel:
        lanes = Lanes(
            declare_channel=world.channel,
            consume_channel=lane_channel,
            topology=world.topology,
            publisher=world.publisher,
            handler=lane_handler,
            tenant_concurrency=1,
            stop=stop,
            drain_timeout_s=settings.drain_timeout_s,
        )
        async with (
            running(lanes.run(), stop),
            world.consuming(SUBMIT_CLIP, SubmitClip, LaneSorter(lanes, world.publisher)),
        ):
            await eventually(lambda: len(first) == 2, "both clips sorted and handled")

    # Only the copy of a message delivered once is handled as a first (and may be submitted
    # without reading its clip); the other reads its clip before it goes to Runware.
    assert first == {again.message_id: False, fresh.message_id: True}


# --- the API puts a tenant's clips straight on its lane ---------------------------------------


@pytest.fixture
def sorted_projects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The projects whose ``SubmitClip``s the submitter's sorter moved, one entry per clip."""
    seen: list[str] = []
    sort = LaneSorter.__call__

    async def recording(self: LaneSorter, message: SubmitClip) -> None:
        seen.append(message.project_id)
        await sort(self, message)

    monkeypatch.setattr(LaneSorter, "__call__", recording)
    return seen


async def submitted(runware_sim: RunningSimulator, project: dict[str, Any]) -> bool:
    seen = {task["task_uuid"] for task in await runware_sim.tasks()}
    return set(project["clips"]) <= seen


async def submitting_past_the_sorter(
    api: Api, runware_sim: RunningSimulator
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A new tenant whose first project went through the sorter, and whose lane the API
    now knows a submitter serves: its id, its auth headers, that first project."""
    tenant_id, auth = await api.new_tenant()
    first = (await api.create(auth)).json()
    await eventually(lambda: submitted(runware_sim, first), "a new tenant's clips at Runware")
    await eventually(lambda: api.knows_lane(tenant_id), "the API told of the tenant's lane")
    return tenant_id, auth, first


async def test_a_tenants_first_clips_are_sorted_and_once_its_lane_is_served_the_next_skip_it(
    api: Api, settings: Settings, runware_sim: RunningSimulator, sorted_projects: list[str]
) -> None:
    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop):
        _tenant_id, auth, first = await submitting_past_the_sorter(api, runware_sim)

        second = (await api.create(auth)).json()
        await eventually(lambda: submitted(runware_sim, second), "the next project's at Runware")

    assert first["project_id"] in sorted_projects
    assert second["project_id"] not in sorted_projects


async def test_a_lane_deleted_under_the_api_costs_a_detour_through_the_sorter_not_a_clip(
    api: Api,
    settings: Settings,
    runware_sim: RunningSimulator,
    sorted_projects: list[str],
    amqp_connection: AbstractRobustConnection,
) -> None:
    stop = asyncio.Event()
    async with running(main(settings, stop=stop), stop):
        tenant_id, auth, _first = await submitting_past_the_sorter(api, runware_sim)
        async with amqp_channel(amqp_connection) as channel:
            await channel.queue_delete(api.topology.lane_queue(tenant_id))  # x-expires, say

        second = (await api.create(auth)).json()
        await eventually(lambda: submitted(runware_sim, second), "the next project's at Runware")

    assert second["project_id"] in sorted_projects
