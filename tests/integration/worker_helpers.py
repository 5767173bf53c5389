"""What the submitter and poller tests share: a world of stores, broker and simulator.

Messages are watched, not polled for: an ``Inbox`` consumes a queue (or the
event exchange) from the moment it is opened. Waits have deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import SecretStr

from reelflow_common.accounting import CostBook
from reelflow_common.broker import Publisher, amqp_channel, consume
from reelflow_common.commands import check_command, submit_command
from reelflow_common.domain import ClipRequest
from reelflow_common.messages import CheckClip, ClipUpdated, Event, Message, SubmitClip, parse_event
from reelflow_common.polling import ClipProfile, FixedLadderPlanner
from reelflow_common.runware import RunwareClient
from reelflow_common.settings import RunwareSettings, TopologySettings
from reelflow_common.store import NewProject, Project, ProjectStore
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP, Topology, declare_topology
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.recorder import ClipRecorder
from reelflow_poller.handlers import CheckHandler
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.service import video_request
from tests.waiting import DEADLINE_S, eventually

M = TypeVar("M", bound=Message)
N = TypeVar("N", bound=Message)

#: ladders of tens of milliseconds, so a delayed message comes back at once
FAST_LADDERS: dict[str, Any] = {
    "poll_initial_delay_s": 0.05,
    "poll_backoff": 2.0,
    "poll_max_delay_s": 0.2,
    "retry_initial_delay_s": 0.05,
    "retry_max_delay_s": 0.2,
}


def runware_settings(sim: RunningSimulator) -> dict[str, Any]:
    """Settings fields that point a service at the simulator."""
    return {
        "runware_base_url": sim.base_url,
        "runware_api_key": SecretStr(sim.api_key),
        "runware_timeout_s": 5.0,
    }


class Inbox:
    """Every message that reaches one queue from now on, acknowledged on arrival."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def next(self) -> AbstractIncomingMessage:
        return await asyncio.wait_for(self.arrived.get(), DEADLINE_S)

    async def next_of(self, model: type[M]) -> tuple[M, AbstractIncomingMessage]:
        raw = await self.next()
        assert raw.type == model.message_type
        return model.model_validate_json(raw.body), raw

    def drain(self) -> list[AbstractIncomingMessage]:
        """What has arrived so far, without waiting."""
        found = []
        while not self.arrived.empty():
            found.append(self.arrived.get_nowait())
        return found


def event_of(raw: AbstractIncomingMessage) -> Event:
    event = parse_event(raw.type, raw.body)
    assert event is not None, f"not an event: {raw.type}"
    return event


def died_in(raw: AbstractIncomingMessage) -> str | None:
    """The queue a message expired in before reaching its work queue (its wait queue)."""
    deaths = (raw.headers or {}).get("x-death")
    if not isinstance(deaths, list) or not deaths:
        return None
    first = deaths[-1]  # the oldest death is last
    assert isinstance(first, dict)
    queue = first.get("queue")
    return queue.decode() if isinstance(queue, bytes) else str(queue)


@dataclass(frozen=True)
class Sent:
    work_queue: str
    message: Message
    #: the wait queue's TTL
    delay_s: float | None
    sent_at: datetime = field(default_factory=utcnow)

    @property
    def wait_s(self) -> float | None:
        """How long the command waits: its wait queue's TTL, or until a check's ``due_at``
        when the TTL falls short of it (``reelflow_common.polling.delivery``)."""
        due_at = getattr(self.message, "due_at", None)
        if due_at is None:
            return self.delay_s
        return float((due_at - self.sent_at).total_seconds())


class RecordingPublisher(Publisher):
    """A real publisher that also remembers every command it sent, in order."""

    def __init__(self, channel: AbstractChannel, topology: Topology) -> None:
        super().__init__(channel, topology, timeout_s=5)
        self.sent: list[Sent] = []

    async def send(
        self,
        work_queue: str,
        message: Message,
        *,
        delay_s: float | None = None,
        to: str | None = None,
    ) -> None:
        await super().send(work_queue, message, delay_s=delay_s, to=to)
        self.sent.append(Sent(work_queue, message, delay_s))

    def sent_to(self, work_queue: str) -> list[Any]:
        return [sent.message for sent in self.sent if sent.work_queue == work_queue]


def check_handler(
    world: World,
    settings: PollerSettings,
    *,
    projects: ProjectStore | None = None,
    runware: RunwareClient | None = None,
    costs: CostBook | None = None,
) -> CheckHandler:
    """The poller's CheckClip handler as its ``main()`` builds it, on the world's pieces, but
    sending each next check in a message of its own (no ``CheckBundles``)."""
    return CheckHandler(
        ClipRecorder(projects or world.projects, world.publisher),
        runware or world.runware,
        world.publisher,
        policy=Policy.from_settings(settings),
        planner=FixedLadderPlanner.from_settings(settings),
        clock=utcnow,
        lease_s=settings.lease_s,
        costs=costs,
    )


@dataclass
class World:
    """One test's project store, broker names, publisher, simulator and Runware client."""

    projects: ProjectStore
    topology: Topology
    connection: AbstractRobustConnection
    channel: AbstractChannel
    publisher: RecordingPublisher
    sim: RunningSimulator
    runware: RunwareClient
    tenant_id: str = "tenant-1"
    _inboxes: list[Inbox] = field(default_factory=list)

    @asynccontextmanager
    async def consuming(
        self,
        work_queue: str,
        model: type[M] | tuple[type[M], type[N]],
        handler: Callable[[M | N], Awaitable[None]],
        *,
        concurrency: int = 1,
    ) -> AsyncIterator[None]:
        """Run the consume policy on ``work_queue`` (a channel of its own) until the block ends."""
        stop = asyncio.Event()
        async with amqp_channel(self.connection) as channel:
            loop = consume(
                channel,
                self.topology,
                work_queue,
                model,
                handler,
                publisher=self.publisher,
                concurrency=concurrency,
                stop=stop,
            )
            async with running(loop, stop):
                yield

    async def new_project(self, *prompts: str, **clip_fields: Any) -> Project:
        """A project as the API creates it: queued clips, each leased to its first chain."""
        fields = {"duration": 4, "width": 1280, "height": 720} | clip_fields
        new = NewProject(
            tenant_id=self.tenant_id,
            title="Trip to Lisbon",
            model="google:3@3",
            scenes=[ClipRequest(prompt=prompt, **fields) for prompt in prompts or ("a fox",)],
            correlation_id="req-1",
        )
        return (await self.projects.create(new)).project

    async def processing(self, project: Project) -> Project:
        """Submit every clip to the simulator and record it processing, as the submitter would."""
        for clip in project.clips:
            message = self.submit_of(project, clip.scene_index)
            await self.runware.submit_video(video_request(message, webhook_url=None))
            change = await self.projects.mark_processing(
                project.id, clip.scene_index, clip.task_uuid, token=message.token
            )
            assert change.applied
        return await self.project(project.id)

    def submit_of(self, project: Project, index: int = 0) -> SubmitClip:
        """The first SubmitClip of a clip, as the API sends it (``project`` read with requests)."""
        if project.requests is None:
            raise AssertionError("read the project with its requests")
        return submit_command(project, index, correlation_id="req-1")

    async def check_of(
        self, project: Project, index: int = 0, *, check: int = 1, age_s: float = 0.0
    ) -> CheckClip:
        """The CheckClip of a processing clip's chain, as if submitted ``age_s`` ago."""
        stored = await self.projects.get(project.id, with_requests=True)
        assert stored is not None
        message = check_command(stored, index, correlation_id="req-1")
        earlier = timedelta(seconds=age_s)
        return message.model_copy(
            update={
                "check": check,
                "submitted_at": message.submitted_at - earlier,
                "watched_since": message.watched_since - earlier,
            }
        )

    async def project(self, project_id: str) -> Project:
        found = await self.projects.get(project_id, with_requests=True)
        assert found is not None
        return found

    async def until_finished_at_runware(self, *task_uuids: str) -> None:
        async def finished() -> bool:
            views = [await self.sim.task(task_uuid) for task_uuid in task_uuids]
            return all(view["state"] in ("success", "error") for view in views)

        await eventually(finished, f"Runware finished {task_uuids}")

    async def ready_count(self, queue_name: str) -> int:
        """Messages ready in a queue (full name); a fresh channel, so the count is current."""
        async with amqp_channel(self.connection) as channel:
            queue = await channel.declare_queue(queue_name, passive=True)
            return queue.declaration_result.message_count or 0

    async def inbox(self, work_queue: str) -> Inbox:
        """Messages arriving in ``work_queue`` (unprefixed name)."""
        inbox = Inbox()
        queue = await self.channel.get_queue(self.topology.queue(work_queue))
        await queue.consume(inbox.arrived.put, no_ack=True)
        return inbox

    async def events(self) -> Inbox:
        """Every event published on the test's event exchange from now on."""
        inbox = Inbox()
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.topology.events_exchange, routing_key="#")
        await queue.consume(inbox.arrived.put, no_ack=True)
        return inbox

    async def events_until(self, inbox: Inbox, model: type[Event]) -> list[Event]:
        """Every event up to the first ``model`` one, then every other published so far
        (:meth:`settle_events`): an event is published after the write a test may have seen."""
        events: list[Event] = []
        while not any(isinstance(event, model) for event in events):
            events.append(event_of(await inbox.next()))
        return events + await self.settle_events(inbox)

    async def settle_events(self, inbox: Inbox) -> list[Event]:
        """Every event published so far: a marker published last is received last."""
        marker = ClipUpdated.model_validate(
            {
                "project_id": "marker",
                "tenant_id": "marker",
                "seq": 0,
                "clip": {"task_uuid": "marker", "scene_index": 0, "status": "queued"},
                "counts": {"total_clips": 0, "completed": 0, "pending": 0, "failed": 0},
            }
        )
        await self.publisher.publish_event(marker)
        events: list[Event] = []
        while True:
            event = event_of(await inbox.next())
            if event.message_id == marker.message_id:
                return events
            events.append(event)


async def handled_first(
    world: World, handler: Callable[[SubmitClip], Awaitable[None]], message: SubmitClip
) -> None:
    """``message`` delivered and handled for the first time, as a chain's first submit is.

    (A handler called directly counts as a redelivery: nothing then says it is the first,
    and a submit handled so reads its clip before it goes to Runware.)
    """
    handled = asyncio.Event()

    async def consumed(delivered: SubmitClip) -> None:
        await handler(delivered)
        handled.set()

    await world.publisher.send(SUBMIT_CLIP, message)
    world.publisher.sent.clear()
    async with world.consuming(SUBMIT_CLIP, SubmitClip, consumed):
        await asyncio.wait_for(handled.wait(), DEADLINE_S)


def refuse_checks(world: World, monkeypatch: Any, error: Exception) -> None:
    """From now on every ``CheckClip`` the world's publisher sends fails with ``error`` (the
    broker did not confirm it); every other message goes out as before."""
    send = world.publisher.send

    async def refusing(work_queue: str, message: Message, **kwargs: Any) -> None:
        if work_queue == CHECK_CLIP:
            raise error
        await send(work_queue, message, **kwargs)

    monkeypatch.setattr(world.publisher, "send", refusing)


@asynccontextmanager
async def open_world(
    connection: AbstractRobustConnection,
    settings: TopologySettings,
    projects: ProjectStore,
    sim: RunningSimulator,
) -> AsyncIterator[World]:
    """A world on the test's topology; the caller owns the connection and the database."""
    topology = Topology.from_settings(settings)
    async with (
        amqp_channel(connection) as channel,
        RunwareClient.open(RunwareSettings(**runware_settings(sim))) as runware,
    ):
        await declare_topology(channel, topology)
        publisher = RecordingPublisher(channel, topology)
        yield World(projects, topology, connection, channel, publisher, sim, runware)


@asynccontextmanager
async def running(coro: Awaitable[None], stop: asyncio.Event) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` (a consume loop or a main) in a task; stop it on exit, within the deadline."""
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, DEADLINE_S)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@dataclass(frozen=True)
class CompletionsSeen(FixedLadderPlanner):
    """The fixed ladder, remembering each completion it was told: (model, elapsed_s, since_s)."""

    seen: list[tuple[str, float, float | None]] = field(default_factory=list)

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        self.seen.append((profile.model, elapsed_s, since_s))
