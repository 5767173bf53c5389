"""The end-to-end tests' stacks: the launcher's, tuned to finish clips in seconds.

One simulator, the four services, one queue prefix and one database per stack,
all on free ports; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import websockets

from reelflow_devtools.launcher import Simulator, Stack, StackConfig
from tests.waiting import PROCESS_DEADLINE_S

#: lease of a clip's chain here: a crashed service's clips are re-armed within seconds
LEASE_S = 3.0
#: short ladders, leases and reconciles, so retries, polls and re-arms happen within a test
SETTINGS = {
    "REELFLOW_POLL_INITIAL_DELAY_S": "0.3",
    "REELFLOW_POLL_BACKOFF": "1.5",
    "REELFLOW_POLL_MAX_DELAY_S": "1.0",
    "REELFLOW_RETRY_INITIAL_DELAY_S": "0.2",
    "REELFLOW_RETRY_MAX_DELAY_S": "1.0",
    "REELFLOW_MAX_DELIVERIES": "3",
    "REELFLOW_LEASE_S": str(LEASE_S),
    # Tenant lanes are not deleted with the topology: unused, the broker removes them.
    "REELFLOW_LANE_EXPIRES_S": "120",
    "REELFLOW_RECONCILE_INTERVAL_S": "0.5",
    "REELFLOW_RECONCILE_GRACE_S": "0.5",
}


def e2e_config(
    amqp_url: str, mongo_url: str, run_dir: Path, *, webhooks: bool = True, **settings: str
) -> StackConfig:
    """A stack of its own queue prefix and database on the session's broker and MongoDB.

    ``settings`` (``REELFLOW_*``) override the ones above. With webhooks the
    secret is a canary, unique per stack, so a test can search every log line for it.
    """
    tag = uuid.uuid4().hex[:8]
    return StackConfig(
        run_dir=run_dir,
        amqp_url=amqp_url,
        amqp_prefix=f"e2e-{tag}.",
        mongo_url=mongo_url,
        database=f"e2e_{tag}",
        simulator=Simulator(speedup=20.0, seed=7),
        settings=SETTINGS | settings,
        webhook_secret=f"e2e-canary-{uuid.uuid4().hex}" if webhooks else None,
        http_host="127.0.0.1",
    )


def started(config: StackConfig) -> Iterator[Stack]:
    """A started stack (for a fixture to yield from), stopped and its queues deleted after."""
    stack = Stack(config)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()  # the services first: their queues go once nobody consumes them
        asyncio.run(stack.delete_queues())


async def watch_until_finished(
    url: str, *, deadline_s: float = PROCESS_DEADLINE_S
) -> list[dict[str, Any]]:
    """Every WebSocket message up to and including ``project.finished``."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(deadline_s):
        async with websockets.connect(url) as ws:
            async for raw in ws:
                message = json.loads(raw)
                received.append(message)
                if message["type"] == "project.finished":
                    return received
    raise AssertionError(f"the WebSocket closed before project.finished: {received}")
