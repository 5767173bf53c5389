"""Dead-letter queues: their depth as a gauge, and moving their messages back to work."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import REGISTRY

from reelflow_common.admin import dlq as admin_dlq
from reelflow_common.broker import Publisher, PublishError, amqp_channel
from reelflow_common.broker.consume import consume, first_handling
from reelflow_common.broker.dlq import (
    dead_letter_depths,
    report_dead_letter_depths,
    requeue_dead_letters,
)
from reelflow_common.messages import SubmitClip
from reelflow_common.topology import (
    CHECK_CLIP,
    HEADER_FAILURES,
    HEADER_REQUEUED,
    HEADER_RETRIES,
    HINTED_CHECK,
    STORE_VIDEO,
    SUBMIT_CLIP,
    Topology,
    declare_topology,
)
from tests.integration.sample_messages import submit_clip
from tests.integration.worker_helpers import running
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def dead_letter(
    channel: AbstractChannel, topology: Topology, work_queue: str, task_uuid: str
) -> SubmitClip:
    """Put a message in ``work_queue``'s DLQ as the consume policy leaves it there."""
    message = submit_clip(task_uuid, correlation_id="req-1")
    await channel.default_exchange.publish(
        aio_pika.Message(
            message.model_dump_json().encode(),
            headers={
                **message.headers(),
                HEADER_FAILURES: 4,
                HEADER_RETRIES: 2,
                "x-delivery-count": 3,
            },
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.message_type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        topology.dead_letter_queue(work_queue),
    )
    return message


async def take_all(channel: AbstractChannel, queue_name: str) -> list[Any]:
    queue = await channel.get_queue(queue_name, ensure=False)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def test_depths_count_the_messages_in_each_dlq(
    channel: AbstractChannel, topology: Topology
) -> None:
    for n in range(3):
        await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}")
    await dead_letter(channel, topology, CHECK_CLIP, "t9")

    depths = await dead_letter_depths(channel, topology)

    assert depths == {SUBMIT_CLIP: 3, CHECK_CLIP: 1, HINTED_CHECK: 0, STORE_VIDEO: 0}


async def test_the_gauge_reports_the_depth_of_each_dlq_a_worker_owns(
    amqp_connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology
) -> None:
    await dead_letter(channel, topology, CHECK_CLIP, "t1")
    await dead_letter(channel, topology, CHECK_CLIP, "t2")

    await report_dead_letter_depths(amqp_connection, topology, [CHECK_CLIP, HINTED_CHECK])

    def gauge(work_queue: str) -> float | None:
        return REGISTRY.get_sample_value("reelflow_dead_letters", {"queue": work_queue})

    assert (gauge(CHECK_CLIP), gauge(HINTED_CHECK)) == (2.0, 0.0)


async def test_requeue_moves_dead_letters_back_to_work_with_a_fresh_start(
    channel: AbstractChannel, topology: Topology
) -> None:
    sent = [await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}") for n in range(3)]

    moved = await requeue_dead_letters(channel, topology, SUBMIT_CLIP, limit=100)

    assert moved == 3
    back = await take_all(channel, topology.queue(SUBMIT_CLIP))
    assert [SubmitClip.model_validate_json(m.body) for m in back] == sent
    assert back[0].message_id == sent[0].message_id
    assert back[0].correlation_id == "req-1"
    assert back[0].type == "submit_clip"
    # Our failure and retry counts and the broker's bookkeeping start over; the copy says it
    # was moved back once.
    own = {key: value for key, value in back[0].headers.items() if key != "x-delivery-count"}
    assert own == {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "task_uuid": "t0",
        "correlation_id": "req-1",
        HEADER_REQUEUED: 1,
    }
    assert back[0].headers.get("x-delivery-count", 0) == 0
    assert (await dead_letter_depths(channel, topology))[SUBMIT_CLIP] == 0


async def test_requeue_moves_at_most_limit_messages(
    channel: AbstractChannel, topology: Topology
) -> None:
    for n in range(3):
        await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}")

    assert await requeue_dead_letters(channel, topology, SUBMIT_CLIP, limit=2) == 2

    assert (await dead_letter_depths(channel, topology))[SUBMIT_CLIP] == 1
    assert len(await take_all(channel, topology.queue(SUBMIT_CLIP))) == 2


async def test_requeue_of_an_empty_dlq_moves_nothing(
    channel: AbstractChannel, topology: Topology
) -> None:
    assert await requeue_dead_letters(channel, topology, HINTED_CHECK, limit=10) == 0


async def test_requeue_into_a_full_work_queue_keeps_the_rest_in_the_dlq(
    settings_for: Any, amqp_connection: AbstractRobustConnection
) -> None:
    from reelflow_common.settings import TopologySettings

    small = Topology.from_settings(settings_for(TopologySettings, work_queue_max_length=1))
    async with amqp_channel(amqp_connection) as channel:
        await declare_topology(channel, small)
        for n in range(4):
            await dead_letter(channel, small, SUBMIT_CLIP, f"t{n}")

        with pytest.raises(PublishError, match="refused"):
            await requeue_dead_letters(channel, small, SUBMIT_CLIP, limit=10)

        # A quorum queue takes one message past its limit; the refused one went back to
        # the DLQ (a nack, which the broker applies a moment later): none lost or doubled.
        on_work_queue = len(await take_all(channel, small.queue(SUBMIT_CLIP)))
        assert on_work_queue == 2

        async def rest_in_the_dlq() -> bool:
            return (await dead_letter_depths(channel, small))[SUBMIT_CLIP] == 2

        await eventually(rest_in_the_dlq, "the refused message back in the DLQ")


async def test_requeue_refuses_a_name_that_is_not_a_work_queue(
    channel: AbstractChannel, topology: Topology
) -> None:
    with pytest.raises(ValueError, match="not a work queue"):
        await requeue_dead_letters(channel, topology, "poller.check_clip.dlq", limit=1)


async def test_the_lag_gauge_reports_the_messages_waiting_in_each_work_queue(
    amqp_connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology
) -> None:
    for n in range(3):
        message = submit_clip(f"t{n}")
        await channel.default_exchange.publish(
            aio_pika.Message(message.model_dump_json().encode(), type=message.message_type),
            routing_key=topology.queue(SUBMIT_CLIP),
        )

    await eventually(
        lambda: ready(channel, topology.queue(SUBMIT_CLIP), 3), "three messages on the queue"
    )
    await report_dead_letter_depths(amqp_connection, topology, [SUBMIT_CLIP])

    lag = REGISTRY.get_sample_value("reelflow_queue_ready_messages", {"queue": SUBMIT_CLIP})
    assert lag == 3.0


async def ready(channel: AbstractChannel, queue: str, count: int) -> bool:
    declared = await (await channel.get_underlay_channel()).queue_declare(queue, passive=True)
    return declared.message_count == count


async def test_a_requeued_message_is_never_handled_as_a_first_handling(
    channel: AbstractChannel, topology: Topology
) -> None:
    # A first submit that failed until dead-lettered may have got its task to Runware on
    # the way: the submitter must not take the copy an operator moves back for a first try.
    await dead_letter(channel, topology, SUBMIT_CLIP, "t-requeued")
    assert await requeue_dead_letters(channel, topology, SUBMIT_CLIP, limit=1) == 1
    publisher = Publisher(channel, topology, timeout_s=5)
    await publisher.send(SUBMIT_CLIP, submit_clip("t-fresh"))
    first: dict[str, bool] = {}

    async def handler(message: SubmitClip) -> None:
        first[message.task_uuid] = first_handling()

    stop = asyncio.Event()
    loop = consume(
        channel,
        topology,
        SUBMIT_CLIP,
        SubmitClip,
        handler,
        publisher=publisher,
        concurrency=1,
        stop=stop,
    )
    async with running(loop, stop):
        await eventually(lambda: len(first) == 2, "both messages handled")

    assert first == {"t-requeued": False, "t-fresh": True}


# --- dropping dead letters -------------------------------------------------------------


def ids(messages: list[Any]) -> list[str]:
    return [str(message.message_id) for message in messages]


async def test_drop_removes_only_the_named_message_and_keeps_the_others_in_order(
    channel: AbstractChannel, topology: Topology
) -> None:
    sent = [await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}") for n in range(4)]
    told: list[str] = []

    dropped = await admin_dlq.drop(
        channel,
        topology,
        SUBMIT_CLIP,
        name=sent[1].message_id,
        before_drop=lambda letter: told.append(letter.name),
    )

    assert [letter.name for letter in dropped] == told == [sent[1].message_id]
    assert SubmitClip.model_validate_json(dropped[0].body) == sent[1]
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    await eventually(lambda: ready(channel, dlq, 3), "the other three back in the DLQ")
    assert ids(await take_all(channel, dlq)) == [sent[n].message_id for n in (0, 2, 3)]


async def test_drop_of_every_message_leaves_one_dead_lettered_while_it_runs(
    channel: AbstractChannel, topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = [await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}") for n in range(2)]
    late: list[SubmitClip] = []

    async def depth_then_one_more(*args: Any) -> dict[str, int]:
        counted = await dead_letter_depths(*args)
        late.append(await dead_letter(channel, topology, SUBMIT_CLIP, "t-late"))
        return counted

    monkeypatch.setattr(admin_dlq, "dead_letter_depths", depth_then_one_more)

    dropped = await admin_dlq.drop(
        channel, topology, SUBMIT_CLIP, name=None, before_drop=lambda _: None
    )

    assert [letter.name for letter in dropped] == [m.message_id for m in sent]
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    await eventually(lambda: ready(channel, dlq, 1), "the late message alone in the DLQ")
    assert ids(await take_all(channel, dlq)) == [late[0].message_id]


async def test_drop_never_takes_a_message_another_command_holds(
    amqp_connection: AbstractRobustConnection, channel: AbstractChannel, topology: Topology
) -> None:
    sent = [await dead_letter(channel, topology, SUBMIT_CLIP, f"t{n}") for n in range(3)]
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    async with amqp_channel(amqp_connection) as other:
        held = await (await other.get_queue(dlq, ensure=False)).get(no_ack=False)
        assert held is not None
        assert held.message_id == sent[0].message_id

        dropped = await admin_dlq.drop(
            channel, topology, SUBMIT_CLIP, name=sent[0].message_id, before_drop=lambda _: None
        )

        assert dropped == []
        await held.nack(requeue=True)
    await eventually(lambda: ready(channel, dlq, 3), "all three back in the DLQ")
    assert sorted(ids(await take_all(channel, dlq))) == sorted(ids(sent))


async def test_drop_of_an_id_removes_every_dead_letter_of_that_message(
    channel: AbstractChannel, topology: Topology
) -> None:
    # A message dead-lettered twice (a duplicate publish), or the parts of one.
    twice = await dead_letter(channel, topology, CHECK_CLIP, "t-twice")
    other = await dead_letter(channel, topology, CHECK_CLIP, "t-other")
    await channel.default_exchange.publish(
        aio_pika.Message(b"a part", message_id=twice.message_id),
        topology.dead_letter_queue(CHECK_CLIP),
    )

    dropped = await admin_dlq.drop(
        channel, topology, CHECK_CLIP, name=twice.message_id, before_drop=lambda _: None
    )

    assert [letter.body for letter in dropped] == [twice.model_dump_json().encode(), b"a part"]
    dlq = topology.dead_letter_queue(CHECK_CLIP)
    await eventually(lambda: ready(channel, dlq, 1), "the other one back in the DLQ")
    assert ids(await take_all(channel, dlq)) == [other.message_id]
