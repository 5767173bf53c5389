"""The dead-letter supervisor guard: a broker whose supervisor stopped still declares queues.

On a RabbitMQ node of the test's own (never the machine's shared broker, whose
supervisor the test would stop under every other test).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from reelflow_devtools.processes import ProcessGroup
from reelflow_devtools.rabbitmq import (
    BROKER_FILE_HANDLES,
    OwnNode,
    guard_dead_letter_supervisor,
    rabbitmqctl_eval,
    widen_file_handle_cache,
)
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and not Path("/usr/lib/rabbitmq/bin/rabbitmqctl").exists(),
    reason="rabbitmqctl is not installed",
)

_SUPERVISOR = "whereis(rabbit_fifo_dlx_sup)."


@pytest.fixture
def node(tmp_path: Path) -> Iterator[OwnNode]:
    group = ProcessGroup(log_dir=tmp_path / "logs")
    own = OwnNode(group, tmp_path / "rabbitmq", name=f"reelflow-guard-{uuid.uuid4().hex[:8]}")
    try:
        own.start()
        yield own
    finally:
        group.stop_all()


async def _supervisor_pid(node: OwnNode) -> str | None:
    answer = await asyncio.to_thread(rabbitmqctl_eval, _SUPERVISOR, node)
    return answer if answer.startswith("<") else None


async def _declare_dead_lettering_queue(url: str) -> None:
    """What every service does at start: a quorum queue that dead-letters at least once."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            "guarded.work",
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "guarded.dead",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )


async def test_a_stopped_dead_letter_supervisor_comes_back_and_declares_answer(
    node: OwnNode,
) -> None:
    before = await eventually_returns(
        lambda: _supervisor_pid(node),
        "the node's dead-letter supervisor",
        PROCESS_DEADLINE_S,
        pause_s=PROCESS_PAUSE_S,
    )
    assert await asyncio.to_thread(guard_dead_letter_supervisor, node) == "installed"
    assert await asyncio.to_thread(guard_dead_letter_supervisor, node) == "running"  # once

    stopped = await asyncio.to_thread(
        rabbitmqctl_eval, "supervisor:terminate_child(rabbit_sup, rabbit_fifo_dlx_sup).", node
    )
    assert stopped == "ok"
    after = await eventually_returns(
        lambda: _supervisor_pid(node),
        "the guard to restart the dead-letter supervisor",
        PROCESS_DEADLINE_S,
        pause_s=PROCESS_PAUSE_S,
    )
    assert after != before
    async with asyncio.timeout(PROCESS_DEADLINE_S):
        await _declare_dead_lettering_queue(node.url)


async def test_a_brokers_file_handle_cache_is_widened_live_and_only_once(node: OwnNode) -> None:
    """As a broker booted with 1,024 open files has it: its quorum queues' count would soon
    pass it, and new connections would then wait in their handshake for good."""
    await eventually_returns(
        lambda: _supervisor_pid(node),
        "the node booted",
        PROCESS_DEADLINE_S,
        pause_s=PROCESS_PAUSE_S,
    )
    assert (
        await asyncio.to_thread(rabbitmqctl_eval, "file_handle_cache:set_limit(927).", node) == "ok"
    )

    assert await asyncio.to_thread(widen_file_handle_cache, node) == "widened"
    assert await asyncio.to_thread(widen_file_handle_cache, node) == "kept"
    limit = await asyncio.to_thread(rabbitmqctl_eval, "file_handle_cache:get_limit().", node)
    assert int(limit) == BROKER_FILE_HANDLES
