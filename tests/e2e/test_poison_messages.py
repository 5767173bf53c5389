"""A malformed message on any work queue ends in that queue's DLQ; the services carry on."""

from __future__ import annotations

import aio_pika
import httpx
import pytest

from reelflow_common.topology import STORE_VIDEO, WORK_QUEUES
from reelflow_devtools.launcher import Stack
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e

#: The shared stack keeps no copies (storage off), so no poller consumes poller.store_video;
#: `make chaos` runs with copies on and checks a poison StoreVideo reaches its DLQ.
CONSUMED = [work_queue for work_queue in WORK_QUEUES if work_queue != STORE_VIDEO]


async def test_malformed_messages_go_to_each_dlq_and_work_continues(shared_stack: Stack) -> None:
    connection = await aio_pika.connect_robust(shared_stack.config.amqp_url)
    async with connection:
        channel = await connection.channel()
        for work_queue in CONSUMED:
            await channel.default_exchange.publish(
                aio_pika.Message(b"{not json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=f"{shared_stack.config.amqp_prefix}{work_queue}",
            )
        for work_queue in CONSUMED:
            dlq = await channel.get_queue(f"{shared_stack.config.amqp_prefix}{work_queue}.dlq")

            async def dead_letter(dlq: aio_pika.abc.AbstractQueue = dlq) -> bytes | None:
                message = await dlq.get(fail=False, no_ack=True)
                return message.body if message else None

            assert await eventually_returns(
                dead_letter, f"{work_queue}.dlq", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
            ) == (b"{not json")

    key = await shared_stack.issue_key("tenant-after-poison")
    async with httpx.AsyncClient(
        base_url=shared_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as api:
        answer = await api.post(
            "/v1/projects",
            params={"wait": 30},
            json={"scenes": [{"prompt": "after the poison [sim:latency=10]"}]},
        )
    assert answer.json()["all_complete"] is True
    assert answer.json()["completed"] == 1
