"""The end-to-end tests' stacks: the launcher's, tuned to finish clips in seconds.

One simulator, the four services, one queue prefix and one database per stack,
all on free ports; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import websockets

from reelflow_devtools.launcher import Simulator, StackConfig

WEBHOOK_SECRET = "e2e-webhook-secret"
#: short ladders and sweeps, so retries, polls and re-dispatches happen within a test
SETTINGS = {
    "REELFLOW_POLL_INITIAL_DELAY_S": "0.3",
    "REELFLOW_POLL_BACKOFF": "1.5",
    "REELFLOW_POLL_MAX_DELAY_S": "1.0",
    "REELFLOW_RETRY_INITIAL_DELAY_S": "0.2",
    "REELFLOW_RETRY_MAX_DELAY_S": "1.0",
    "REELFLOW_MAX_DELIVERIES": "3",
    "REELFLOW_SWEEP_INTERVAL_S": "1",
    "REELFLOW_SWEEP_GRACE_S": "5",
}


def e2e_config(amqp_url: str, mongo_url: str, run_dir: Path) -> StackConfig:
    """A stack of its own queue prefix and database on the session's broker and MongoDB."""
    tag = uuid.uuid4().hex[:8]
    return StackConfig(
        run_dir=run_dir,
        amqp_url=amqp_url,
        amqp_prefix=f"e2e-{tag}.",
        mongo_url=mongo_url,
        database=f"e2e_{tag}",
        simulator=Simulator(speedup=20.0, seed=7),
        settings=SETTINGS,
        webhook_secret=WEBHOOK_SECRET,
        http_host="127.0.0.1",
    )


async def watch_until_finished(url: str, *, deadline_s: float = 90) -> list[dict[str, Any]]:
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
