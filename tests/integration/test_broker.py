"""Publisher and the consume() policy against the real broker.

Every test has its own queue prefix and a ladder of tens of milliseconds, so a
retry or a delayed message comes back quickly. Waits have deadlines; nothing
sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import pytest
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.admin.dlq import dead_letter
from reelflow_common.broker import Publisher, PublishError, amqp_channel, amqp_connection, consume
from reelflow_common.broker.transport import CoalescingWriter
from reelflow_common.domain import ClipStatus, Counts
from reelflow_common.errors import InvalidMessage, TransientError
from reelflow_common.logging import get_logger
from reelflow_common.messages import ClipUpdated, ClipView, SubmitClip
from reelflow_common.ops import amqp_ready
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import (
    HEADER_FAILURES,
    HEADER_PROJECT_ID,
    HEADER_RETRIES,
    RETRY_JITTER,
    SUBMIT_CLIP,
    Topology,
    declare_topology,
)
from tests.integration.broker_control import close_connection_from_the_broker
from tests.integration.sample_messages import submit_clip as clip
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration


Handler = Callable[[SubmitClip], Awaitable[None]]


@pytest.fixture
def publisher(channel: AbstractChannel, topology: Topology) -> Publisher:
    return Publisher(channel, topology, timeout_s=5)


async def collect(
    channel: AbstractChannel, queue_name: str
) -> asyncio.Queue[AbstractIncomingMessage]:
    """Every message that reaches ``queue_name`` from now on, acknowledged on arrival."""
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    queue = await channel.get_queue(queue_name)
    await queue.consume(arrived.put, no_ack=True)
    return arrived


async def next_of(arrived: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(arrived.get(), timeout=DEADLINE_S)


async def ready_count(connection: AbstractRobustConnection, queue_name: str) -> int:
    async with amqp_channel(connection) as channel:
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


@asynccontextmanager
async def consuming(
    connection: AbstractRobustConnection,
    topology: Topology,
    handler: Handler,
    *,
    concurrency: int = 4,
    drain_timeout_s: float = DEADLINE_S,
    publisher_for: Callable[[AbstractChannel], Publisher] | None = None,
) -> AsyncIterator[asyncio.Event]:
    """Run consume() on a channel of its own; stop and close the channel on exit.

    Closing the channel returns anything left unacknowledged to the queue, so
    counting the queue afterwards shows whether consume() acknowledged.
    """
    stop = asyncio.Event()
    async with amqp_channel(connection) as channel:
        if publisher_for is None:
            publisher = Publisher(channel, topology, timeout_s=5)
        else:
            publisher = publisher_for(channel)
        task = asyncio.create_task(
            consume(
                channel,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                handler,
                publisher=publisher,
                concurrency=concurrency,
                stop=stop,
                drain_timeout_s=drain_timeout_s,
            )
        )
        try:
            yield stop
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=DEADLINE_S + drain_timeout_s)


async def back_in_queue(connection: AbstractRobustConnection, queue: str) -> None:
    """Wait for the one message of ``queue`` to be ready again after its channel closed.

    A quorum queue takes back a closed channel's unacknowledged deliveries on its own
    schedule, a moment after the close.
    """

    async def ready() -> bool:
        return await ready_count(connection, queue) == 1

    await eventually(ready, f"the message back in {queue}")


def recorder() -> tuple[Handler, asyncio.Queue[SubmitClip]]:
    handled: asyncio.Queue[SubmitClip] = asyncio.Queue()

    async def handle(message: SubmitClip) -> None:
        await handled.put(message)

    return handle, handled


async def publish_raw(
    channel: AbstractChannel, routing_key: str, body: bytes, *, type_: str = "submit_clip"
) -> None:
    await channel.default_exchange.publish(
        aio_pika.Message(body, type=type_, content_type="application/json"), routing_key
    )


class LogWatch:
    """A structlog processor that keeps every line and wakes whoever waits for one."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        self.lines.append(dict(event_dict))
        self._changed.set()
        return event_dict

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first line with ``event`` (and ``fields``), once it has been logged."""
        async with asyncio.timeout(DEADLINE_S):
            while True:
                for line in self.named(event):
                    if fields.items() <= line.items():
                        return line
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    """Log lines of this test, with the bound context (correlation_id, …) merged in, and
    their level."""
    watch = LogWatch()
    with structlog.testing.capture_logs(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            watch,
        ]
    ):
        yield watch


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- publishing ----------------------------------------------------------------


async def test_send_puts_a_persistent_json_message_with_its_ids_on_the_work_queue(
    channel: AbstractChannel, publisher: Publisher, topology: Topology
) -> None:
    arrived = await collect(channel, topology.queue(SUBMIT_CLIP))
    sent = clip(correlation_id="req-1")

    await publisher.send(SUBMIT_CLIP, sent)

    received: AbstractIncomingMessage = await next_of(arrived)
    assert SubmitClip.model_validate_json(received.body) == sent
    assert received.type == "submit_clip"
    assert received.content_type == "application/json"
    assert received.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert received.message_id == sent.message_id
    assert received.correlation_id == "req-1"
    assert received.timestamp is not None
    assert received.headers == {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "task_uuid": "t1",
        "correlation_id": "req-1",
    }


async def test_delayed_send_reaches_the_work_queue_through_the_wait_queue(
    channel: AbstractChannel, publisher: Publisher, topology: Topology
) -> None:
    arrived = await collect(channel, topology.queue(SUBMIT_CLIP))

    await publisher.send(SUBMIT_CLIP, clip(), delay_s=0.1)

    received: AbstractIncomingMessage = await next_of(arrived)
    deaths: Any = (received.headers or {})["x-death"]
    assert deaths[0]["queue"] == topology.wait_queue(SUBMIT_CLIP, 100)
    assert deaths[0]["reason"] == "expired"


async def test_send_to_an_undeclared_queue_raises_publish_error(publisher: Publisher) -> None:
    with pytest.raises(PublishError, match="no queue"):
        await publisher.send("nobody.listens_here", clip())


async def test_send_with_a_delay_no_wait_queue_has_is_an_error(publisher: Publisher) -> None:
    with pytest.raises(KeyError):
        await publisher.send("nobody.listens_here", clip(), delay_s=1)


async def test_publish_event_reaches_subscribers_and_needs_none(
    channel: AbstractChannel, publisher: Publisher, topology: Topology
) -> None:
    event = ClipUpdated(
        project_id="p1",
        tenant_id="x",
        seq=1,
        clip=ClipView(task_uuid="t1", scene_index=0, status=ClipStatus.SUCCESS),
        counts=Counts(total_clips=1, completed=1, pending=0, failed=0),
    )
    await publisher.publish_event(event)  # nobody bound yet: fine

    subscriber = await channel.declare_queue(exclusive=True, auto_delete=True)
    await subscriber.bind(topology.events_exchange, routing_key="clip.#")
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await subscriber.consume(arrived.put, no_ack=True)
    await publisher.publish_event(event)

    received: AbstractIncomingMessage = await next_of(arrived)
    assert received.routing_key == "clip.updated.p1"  # its type and its project
    assert ClipUpdated.model_validate_json(received.body) == event
    # What the notifier routes by before it parses anything.
    assert (received.headers or {})[HEADER_PROJECT_ID] == "p1"


async def test_connection_is_named_and_reports_ready_until_closed(
    settings_for: Callable[..., Any],
) -> None:
    async with amqp_connection(settings_for(TopologySettings), name="test-worker") as connection:
        ready = amqp_ready(connection)
        assert await ready()
    assert not await ready()


async def test_a_services_connection_writes_the_frames_of_a_turn_together(
    settings_for: Callable[..., Any],
    publisher: Publisher,
    topology: Topology,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acknowledgements made in the same turn of the event loop leave in one socket write."""
    written = {"frames": 0, "socket_writes": 0}
    write, init = CoalescingWriter.write, CoalescingWriter.__init__

    def counting_write(self: CoalescingWriter, data: Any) -> None:
        written["frames"] += 1
        write(self, data)

    def counting_init(self: CoalescingWriter, transport: Any, *rest: Any) -> None:
        init(self, transport, *rest)
        socket_write = transport.write

        def counted(data: bytes) -> None:
            written["socket_writes"] += 1
            socket_write(data)

        transport.write = counted

    monkeypatch.setattr(CoalescingWriter, "write", counting_write)
    monkeypatch.setattr(CoalescingWriter, "__init__", counting_init)
    sent = [clip(task_uuid=f"t{index}") for index in range(40)]
    for message in sent:
        await publisher.send(SUBMIT_CLIP, message)
    handle, handled = recorder()

    settings = settings_for(TopologySettings)
    async with amqp_connection(settings, name="test-coalescing") as connection:
        opened = dict(written)
        async with consuming(connection, topology, handle, concurrency=len(sent)):
            got = [await next_of(handled) for _ in sent]
            await eventually(
                lambda: written["frames"] - opened["frames"] >= len(sent),
                "at least as many frames as deliveries (their acknowledgements among them)",
            )
        assert await ready_count(connection, topology.queue(SUBMIT_CLIP)) == 0
        frames = written["frames"] - opened["frames"]
        socket_writes = written["socket_writes"] - opened["socket_writes"]

    assert sorted(message.task_uuid for message in got) == sorted(m.task_uuid for m in sent)
    assert socket_writes < frames * 3 / 4, (socket_writes, frames)  # one each: equal


# --- consume(): the acknowledgement policy ---------------------------------------


async def test_handled_message_is_acknowledged(
    amqp_connection: AbstractRobustConnection, publisher: Publisher, topology: Topology
) -> None:
    handle, handled = recorder()
    acked_before = sample("reelflow_messages_total", queue=SUBMIT_CLIP, outcome="acked")
    sent = clip()

    async with consuming(amqp_connection, topology, handle):
        await publisher.send(SUBMIT_CLIP, sent)
        assert await next_of(handled) == sent

    assert await ready_count(amqp_connection, topology.queue(SUBMIT_CLIP)) == 0
    assert sample("reelflow_messages_total", queue=SUBMIT_CLIP, outcome="acked") == acked_before + 1


@pytest.mark.parametrize(
    ("body", "type_", "reason"),
    [
        (b"{not json", "submit_clip", "Invalid JSON"),
        (b'{"project_id": "p1"}', "submit_clip", "task_uuid: Field required"),
        (clip().model_dump_json().encode(), "check_clip", "'check_clip' where 'submit_clip'"),
    ],
    ids=["invalid-json", "wrong-schema", "wrong-type"],
)
async def test_unreadable_message_goes_to_the_dlq_and_the_next_one_is_handled(
    amqp_connection: AbstractRobustConnection,
    channel: AbstractChannel,
    publisher: Publisher,
    topology: Topology,
    body: bytes,
    type_: str,
    reason: str,
    logs: LogWatch,
) -> None:
    dead = await collect(channel, topology.dead_letter_queue(SUBMIT_CLIP))
    handle, handled = recorder()

    async with consuming(amqp_connection, topology, handle):
        await publish_raw(channel, topology.queue(SUBMIT_CLIP), body, type_=type_)
        await publisher.send(SUBMIT_CLIP, clip("good"))
        assert (await next_of(handled)).task_uuid == "good"
        dead_lettered: AbstractIncomingMessage = await next_of(dead)

    assert dead_lettered.body == body
    assert handled.empty()
    rejected = logs.named("message_rejected")
    assert len(rejected) == 1
    assert reason in rejected[0]["reason"]
    # The id dlq list prints, to match the line and the dead letter.
    assert rejected[0]["message_id"] == dead_letter(dead_lettered).name


async def test_handler_raising_invalid_message_sends_it_to_the_dlq_without_retry(
    amqp_connection: AbstractRobustConnection,
    channel: AbstractChannel,
    publisher: Publisher,
    topology: Topology,
) -> None:
    dead = await collect(channel, topology.dead_letter_queue(SUBMIT_CLIP))
    calls: list[SubmitClip] = []

    async def handle(message: SubmitClip) -> None:
        calls.append(message)
        raise InvalidMessage("scene 3 does not exist")

    async with consuming(amqp_connection, topology, handle):
        await publisher.send(SUBMIT_CLIP, clip())
        dead_lettered: AbstractIncomingMessage = await next_of(dead)

    assert SubmitClip.model_validate_json(dead_lettered.body).task_uuid == "t1"
    assert len(calls) == 1


async def test_transient_failure_is_retried_with_backoff_until_it_succeeds(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    seen: asyncio.Queue[SubmitClip] = asyncio.Queue()
    calls: list[SubmitClip] = []
    failures = 3

    async def handle(message: SubmitClip) -> None:
        calls.append(message)
        await seen.put(message)
        if len(calls) <= failures:
            raise TransientError("runware is down")

    sent = clip(correlation_id="req-7")
    async with consuming(amqp_connection, topology, handle):
        await publisher.send(SUBMIT_CLIP, sent)
        deliveries = [await next_of(seen) for _ in range(failures + 1)]
        await logs.wait_for("message_handled", outcome="acked")

    assert deliveries == [sent] * (failures + 1)
    retries = logs.named("message_retry_scheduled")
    assert [(line["retries"], line["delay_ms"]) for line in retries] == [
        (1, 50),
        (2, 100),
        (3, 200),
    ]
    assert await ready_count(amqp_connection, topology.dead_letter_queue(SUBMIT_CLIP)) == 0


async def test_retried_message_keeps_its_properties_and_counts_retries(
    amqp_connection: AbstractRobustConnection,
    channel: AbstractChannel,
    publisher: Publisher,
    topology: Topology,
) -> None:
    async def handle(_message: SubmitClip) -> None:
        raise TransientError("mongo is down")

    wait_queue = topology.wait_queue(SUBMIT_CLIP, 50)
    # Take the retry out of the wait queue before its TTL sends it back.
    async with amqp_channel(amqp_connection) as spy:
        retried = await collect(spy, wait_queue)
        sent = clip(correlation_id="req-3")
        async with consuming(amqp_connection, topology, handle):
            await publisher.send(SUBMIT_CLIP, sent)
            copy: AbstractIncomingMessage = await next_of(retried)

    assert copy.body == sent.model_dump_json().encode()
    assert copy.message_id == sent.message_id
    assert copy.correlation_id == "req-3"
    assert copy.type == "submit_clip"
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers == {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "task_uuid": "t1",
        "correlation_id": "req-3",
        HEADER_RETRIES: 1,
    }


async def test_a_handler_bug_goes_to_the_dlq_after_max_deliveries_failures(
    amqp_connection: AbstractRobustConnection,
    channel: AbstractChannel,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    dead = await collect(channel, topology.dead_letter_queue(SUBMIT_CLIP))
    poison_calls: list[SubmitClip] = []
    handled: asyncio.Queue[SubmitClip] = asyncio.Queue()

    async def handle(message: SubmitClip) -> None:
        if message.task_uuid == "poison":
            poison_calls.append(message)
            raise RuntimeError("a bug")
        await handled.put(message)

    async with consuming(amqp_connection, topology, handle, concurrency=1):
        await publisher.send(SUBMIT_CLIP, clip("poison"))
        await publisher.send(SUBMIT_CLIP, clip("fine"))
        dead_lettered: AbstractIncomingMessage = await next_of(dead)
        assert (await next_of(handled)).task_uuid == "fine"

    assert SubmitClip.model_validate_json(dead_lettered.body).task_uuid == "poison"
    assert len(poison_calls) == topology.max_deliveries
    # Counted in our own header on the copy, never by the broker's redeliveries.
    assert (dead_lettered.headers or {})[HEADER_FAILURES] == topology.max_deliveries - 1
    deaths: Any = (dead_lettered.headers or {})["x-death"]
    assert deaths[0]["reason"] == "rejected"
    failed = logs.named("message_failed") + logs.named("message_dead_lettered")
    assert [line["failures"] for line in failed] == [1, 2]
    assert all(line["exc_info"] for line in failed)
    (given_up,) = logs.named("message_dead_lettered")
    assert given_up["reason"] == "handler failed on every delivery"
    assert given_up["message_id"] == dead_letter(dead_lettered).name == dead_lettered.message_id


async def test_redeliveries_after_lost_channels_do_not_count_toward_the_dlq(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
) -> None:
    started = asyncio.Event()

    async def hang(_message: SubmitClip) -> None:
        started.set()
        await asyncio.Event().wait()

    await publisher.send(SUBMIT_CLIP, clip())
    # More lost channels with the message in flight than max_deliveries allows bug failures.
    for _ in range(topology.max_deliveries + 1):
        started.clear()
        async with consuming(amqp_connection, topology, hang, drain_timeout_s=0.05):
            await asyncio.wait_for(started.wait(), DEADLINE_S)

    buggy_once = FailsOnce(RuntimeError("a bug, once"))
    async with consuming(amqp_connection, topology, buggy_once):
        await asyncio.wait_for(buggy_once.done.wait(), DEADLINE_S)

    assert len(buggy_once.calls) == 2
    assert await ready_count(amqp_connection, topology.dead_letter_queue(SUBMIT_CLIP)) == 0
    assert await ready_count(amqp_connection, topology.queue(SUBMIT_CLIP)) == 0


class FailsOnce:
    """A handler that raises ``error`` on its first call and sets ``done`` on the next."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[SubmitClip] = []
        self.done = asyncio.Event()

    async def __call__(self, message: SubmitClip) -> None:
        self.calls.append(message)
        if len(self.calls) == 1:
            raise self.error
        self.done.set()


class RefusingPublisher(Publisher):
    """A real publisher whose retries the broker "refuses" the first ``refusals`` times."""

    def __init__(self, channel: AbstractChannel, topology: Topology, refusals: float) -> None:
        super().__init__(channel, topology, timeout_s=5)
        self.refusals = refusals
        self.refused = 0
        self.refusing = asyncio.Event()

    async def republish(
        self,
        routing_key: str,
        original: AbstractIncomingMessage,
        *,
        headers: Any,
        body: bytes | None = None,
    ) -> None:
        if self.refused < self.refusals:
            self.refused += 1
            self.refusing.set()
            raise PublishError("the wait queue is full")
        await super().republish(routing_key, original, headers=headers, body=body)


async def test_a_retry_the_broker_refuses_is_published_again_in_process(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    handle = FailsOnce(TransientError("mongo is down"))
    async with (
        amqp_channel(amqp_connection) as side,
        consuming(
            amqp_connection,
            topology,
            handle,
            publisher_for=lambda ch: RefusingPublisher(ch, topology, refusals=3),
        ),
    ):
        del side
        await publisher.send(SUBMIT_CLIP, clip())
        await asyncio.wait_for(handle.done.wait(), DEADLINE_S)
        await logs.wait_for("message_handled", outcome="acked")

    # Handled once as delivered and once as the retry: never redelivered, never nacked.
    assert len(handle.calls) == 2
    refused = logs.named("message_republish_failed")
    assert [line["attempt"] for line in refused] == [1, 2, 3]
    # The retry ladder's delays (0.05 s, doubling), each drawn from its upper half (jitter).
    pauses = [line["retry_in_s"] for line in refused]
    assert len(pauses) == 3
    for pause, ceiling in zip(pauses, [0.05, 0.1, 0.2], strict=True):
        assert ceiling * (1 - RETRY_JITTER) - 0.001 <= pause <= ceiling
    # An ack is every message's usual end: debug; a retry says something, at info.
    handled = [(line["outcome"], line["level"]) for line in logs.named("message_handled")]
    assert handled == [("retried", "info"), ("acked", "debug")]
    assert await ready_count(amqp_connection, topology.dead_letter_queue(SUBMIT_CLIP)) == 0


async def test_a_retry_that_cannot_be_published_goes_back_when_its_channel_dies(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    handle = FailsOnce(TransientError("mongo is down"))
    stop = asyncio.Event()
    async with amqp_channel(amqp_connection) as doomed:
        refusing = RefusingPublisher(doomed, topology, refusals=math.inf)
        task = asyncio.create_task(
            consume(
                doomed,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                handle,
                publisher=refusing,
                concurrency=1,
                stop=stop,
            )
        )
        await publisher.send(SUBMIT_CLIP, clip())
        await asyncio.wait_for(refusing.refusing.wait(), DEADLINE_S)
        # What a lost connection does to the delivery's channel (aiormq also cancels the
        # handlers running on it, which ends the wait for the republish at once).
        await doomed.close()
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)

    # The broker gave the original to the next consumer; no failure was counted.
    async with consuming(amqp_connection, topology, handle):
        await asyncio.wait_for(handle.done.wait(), DEADLINE_S)
    assert len(handle.calls) == 2
    assert logs.named("message_republish_failed")
    assert not logs.named("message_failed")
    assert await ready_count(amqp_connection, topology.dead_letter_queue(SUBMIT_CLIP)) == 0


async def test_stop_while_a_retry_cannot_be_published_leaves_the_message_queued(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    async def handle(_message: SubmitClip) -> None:
        raise TransientError("mongo is down")

    async with consuming(
        amqp_connection,
        topology,
        handle,
        publisher_for=lambda ch: RefusingPublisher(ch, topology, refusals=math.inf),
    ):
        await publisher.send(SUBMIT_CLIP, clip())
        await logs.wait_for("message_republish_failed")

    assert logs.named("message_republish_abandoned")[0]["reason"] == "stopping"

    await back_in_queue(amqp_connection, topology.queue(SUBMIT_CLIP))
    assert await ready_count(amqp_connection, topology.dead_letter_queue(SUBMIT_CLIP)) == 0


async def test_a_full_work_queue_refuses_publishes_with_publish_error(
    settings_for: Callable[..., Any], amqp_connection: AbstractRobustConnection
) -> None:
    small = Topology.from_settings(settings_for(TopologySettings, work_queue_max_length=1))
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, small)
        publisher = Publisher(channel, small, timeout_s=5)
        refused_before = sample("reelflow_published_total", kind="command", result="refused")

        # A quorum queue checks its length after each enqueue: it takes one message past
        # the limit, then refuses every publish until it has room again.
        await publisher.send(SUBMIT_CLIP, clip("first"))
        await publisher.send(SUBMIT_CLIP, clip("second"))
        with pytest.raises(PublishError, match="refused"):
            await publisher.send(SUBMIT_CLIP, clip("third"))

    assert await ready_count(amqp_connection, small.queue(SUBMIT_CLIP)) == 2
    assert sample("reelflow_published_total", kind="command", result="refused") == (
        refused_before + 1
    )


async def test_a_publisher_without_a_channel_yet_raises_publish_error(topology: Topology) -> None:
    with pytest.raises(PublishError, match="not connected"):
        await Publisher(None, topology, timeout_s=1).send(SUBMIT_CLIP, clip())


async def test_stop_waits_for_handlers_in_flight(
    amqp_connection: AbstractRobustConnection, publisher: Publisher, topology: Topology
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def handle(message: SubmitClip) -> None:
        started.set()
        await release.wait()
        finished.append(message.task_uuid)

    stop = asyncio.Event()
    async with amqp_channel(amqp_connection) as consumer_channel:
        task = asyncio.create_task(
            consume(
                consumer_channel,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                handle,
                publisher=Publisher(consumer_channel, topology, timeout_s=5),
                concurrency=2,
                stop=stop,
            )
        )
        await publisher.send(SUBMIT_CLIP, clip())
        await asyncio.wait_for(started.wait(), DEADLINE_S)

        stop.set()
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert not done, "consume() returned while a handler was still running"
        release.set()
        await asyncio.wait_for(task, DEADLINE_S)

    assert finished == ["t1"]
    assert await ready_count(amqp_connection, topology.queue(SUBMIT_CLIP)) == 0


async def test_handler_still_running_after_the_drain_timeout_leaves_its_message_queued(
    amqp_connection: AbstractRobustConnection, publisher: Publisher, topology: Topology
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handle(_message: SubmitClip) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with consuming(amqp_connection, topology, handle, drain_timeout_s=0.1):
        await publisher.send(SUBMIT_CLIP, clip())
        await asyncio.wait_for(started.wait(), DEADLINE_S)

    assert cancelled.is_set()

    await back_in_queue(amqp_connection, topology.queue(SUBMIT_CLIP))


async def test_handler_logs_carry_the_message_correlation_ids(
    amqp_connection: AbstractRobustConnection,
    publisher: Publisher,
    topology: Topology,
    logs: LogWatch,
) -> None:
    log = get_logger("test")
    done = asyncio.Event()

    async def handle(_message: SubmitClip) -> None:
        log.info("inside_handler")
        done.set()

    async with consuming(amqp_connection, topology, handle):
        await publisher.send(SUBMIT_CLIP, clip(correlation_id="req-42"))
        await asyncio.wait_for(done.wait(), DEADLINE_S)
        summary = await logs.wait_for("message_handled")

    ids = {
        "correlation_id": "req-42",
        "project_id": "p1",
        "task_uuid": "t1",
        "tenant_id": "tenant-a",
    }
    (inside,) = logs.named("inside_handler")
    assert ids.items() <= inside.items()
    assert ids.items() <= summary.items()
    assert summary["queue"] == SUBMIT_CLIP
    assert summary["outcome"] == "acked"
    assert summary["duration_ms"] >= 0
    assert "correlation_id" not in structlog.contextvars.get_contextvars()


async def test_concurrency_bounds_the_handlers_running_at_once(
    amqp_connection: AbstractRobustConnection, publisher: Publisher, topology: Topology
) -> None:
    running: list[str] = []
    all_started = asyncio.Event()
    extra_started = asyncio.Event()
    release = asyncio.Event()

    async def handle(message: SubmitClip) -> None:
        running.append(message.task_uuid)
        if len(running) == 3:
            all_started.set()
        if len(running) > 3:
            extra_started.set()
        await release.wait()

    async with consuming(amqp_connection, topology, handle, concurrency=3):
        for n in range(4):
            await publisher.send(SUBMIT_CLIP, clip(f"t{n}"))
        await asyncio.wait_for(all_started.wait(), DEADLINE_S)
        done, _ = await asyncio.wait({asyncio.create_task(extra_started.wait())}, timeout=0.2)
        assert not done, "a fourth handler started while three were running"
        release.set()
        await asyncio.wait_for(extra_started.wait(), DEADLINE_S)


async def test_a_burst_many_times_the_concurrency_is_handled_once_each_and_acknowledged(
    amqp_connection: AbstractRobustConnection, publisher: Publisher, topology: Topology
) -> None:
    # The prefetch is the concurrency: past it, each delivery needs an earlier one
    # acknowledged, so a message never acknowledged stalls the burst.
    handle, handled = recorder()
    acked_before = sample("reelflow_messages_total", queue=SUBMIT_CLIP, outcome="acked")
    burst = [clip(f"t{n}") for n in range(25)]

    async with consuming(amqp_connection, topology, handle, concurrency=4):
        await asyncio.gather(*(publisher.send(SUBMIT_CLIP, sent) for sent in burst))
        seen = [await next_of(handled) for _ in burst]

    assert sorted(message.task_uuid for message in seen) == sorted(m.task_uuid for m in burst)
    assert handled.empty()  # none handled twice
    assert (
        sample("reelflow_messages_total", queue=SUBMIT_CLIP, outcome="acked") == acked_before + 25
    )
    assert await ready_count(amqp_connection, topology.queue(SUBMIT_CLIP)) == 0


async def test_consumer_resumes_after_the_broker_drops_its_connection(
    settings_for: Callable[..., Any], publisher: Publisher, topology: Topology
) -> None:
    name = f"test-reconnect-{topology.prefix}"
    handle, handled = recorder()
    reconnected = asyncio.Event()
    settings = settings_for(TopologySettings)
    async with amqp_connection(settings, name=name, reconnect_interval_s=0.1) as connection:
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())
        async with consuming(connection, topology, handle, concurrency=1):
            await publisher.send(SUBMIT_CLIP, clip("before"))
            assert (await next_of(handled)).task_uuid == "before"

            await close_connection_from_the_broker(name)
            await asyncio.wait_for(reconnected.wait(), DEADLINE_S)
            await publisher.send(SUBMIT_CLIP, clip("after"))
            assert (await next_of(handled)).task_uuid == "after"
            assert await amqp_ready(connection)()


async def test_stop_returns_even_when_the_connection_is_gone(
    settings_for: Callable[..., Any], topology: Topology, logs: LogWatch
) -> None:
    handle, _handled = recorder()
    stop = asyncio.Event()
    async with amqp_connection(settings_for(TopologySettings), name="test-gone") as connection:
        channel = await connection.channel()
        await declare_topology(channel, topology)
        task = asyncio.create_task(
            consume(
                channel,
                topology,
                SUBMIT_CLIP,
                SubmitClip,
                handle,
                publisher=Publisher(channel, topology, timeout_s=5),
                concurrency=1,
                stop=stop,
            )
        )
        await logs.wait_for("consumer_started")
        await connection.close()
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)

    assert logs.named("consumer_stopped")
