"""The whole of reelflow as separate processes, the way an operator runs it.

One simulator, the four services, one queue prefix and one database per stack,
all on free ports; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import websockets
from pymongo import AsyncMongoClient

from reelflow_common.settings import TopologySettings
from reelflow_common.store import ApiKeyStore
from reelflow_devtools.database import prepare_database
from reelflow_devtools.embedded_mongo import free_port
from reelflow_devtools.processes import (
    Child,
    ProcessGroup,
    console_script,
    wait_for_sim_url,
    wait_healthy,
)
from tests.fixtures.infra import delete_topology_queues

T = TypeVar("T")

SERVICES = ("api", "notifier", "submitter", "poller")
#: lease of a clip's chain here: a crashed service's clips are re-armed within seconds
LEASE_S = 3.0


@dataclass
class Stack:
    amqp_url: str
    mongo_url: str
    prefix: str
    database: str
    log_dir: Path
    sim_speedup: float = 20.0
    group: ProcessGroup = field(init=False)
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    sim_url: str = ""
    children: dict[str, Child] = field(default_factory=dict)
    #: settings that differ from the ones below (an empty value unsets an optional one)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: a canary: unique per stack, so a test can search every log line for it
    webhook_secret: str = field(default_factory=lambda: f"e2e-canary-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.group = ProcessGroup(log_dir=self.log_dir)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['notifier']}"

    def start(self) -> None:
        sim = self.group.start(
            "runware-sim",
            [console_script("reelflow-runware-sim"), "--port", "0", "--seed", "7"],
            {"RUNWARE_SIM_SPEEDUP": str(self.sim_speedup)},
        )
        self.sim_url = wait_for_sim_url(sim)
        asyncio.run(prepare_database(self.mongo_url, self.database))
        self.ports = {name: free_port() for name in SERVICES}
        self.env = {
            "REELFLOW_AMQP_URL": self.amqp_url,
            "REELFLOW_AMQP_PREFIX": self.prefix,
            "REELFLOW_MONGO_URL": self.mongo_url,
            "REELFLOW_MONGO_DATABASE": self.database,
            "REELFLOW_RUNWARE_BASE_URL": self.sim_url,
            "REELFLOW_RUNWARE_API_KEY": "sim-key",
            "REELFLOW_POLL_INITIAL_DELAY_S": "0.3",
            "REELFLOW_POLL_BACKOFF": "1.5",
            "REELFLOW_POLL_MAX_DELAY_S": "1.0",
            "REELFLOW_RETRY_INITIAL_DELAY_S": "0.2",
            "REELFLOW_RETRY_MAX_DELAY_S": "1.0",
            "REELFLOW_MAX_DELIVERIES": "3",
            "REELFLOW_LEASE_S": str(LEASE_S),
            "REELFLOW_RECONCILE_INTERVAL_S": "0.5",
            "REELFLOW_RECONCILE_GRACE_S": "0.5",
            "REELFLOW_LOG_FORMAT": "json",
            "REELFLOW_HTTP_HOST": "127.0.0.1",
            "REELFLOW_PUBLIC_BASE_URL": self.api_url,
            "REELFLOW_PUBLIC_WS_URL": self.ws_url,
            "REELFLOW_WEBHOOK_SECRET": self.webhook_secret,
        } | self.extra_env
        for name in SERVICES:
            self.start_service(name)

    def topology_settings(self) -> TopologySettings:
        """The services' topology settings, as their environment gives them."""
        return TopologySettings(
            amqp_prefix=self.prefix,
            poll_initial_delay_s=float(self.env["REELFLOW_POLL_INITIAL_DELAY_S"]),
            poll_backoff=float(self.env["REELFLOW_POLL_BACKOFF"]),
            poll_max_delay_s=float(self.env["REELFLOW_POLL_MAX_DELAY_S"]),
            retry_initial_delay_s=float(self.env["REELFLOW_RETRY_INITIAL_DELAY_S"]),
            retry_max_delay_s=float(self.env["REELFLOW_RETRY_MAX_DELAY_S"]),
            max_deliveries=int(self.env["REELFLOW_MAX_DELIVERIES"]),
        )

    def start_service(self, name: str) -> Child:
        argv = [console_script(f"reelflow-{name}")]
        env = self.env | {"REELFLOW_HTTP_PORT": str(self.ports[name])}
        child = self.children.get(name)
        if child is not None:
            child = self.group.restart(child, argv, env)
        else:
            child = self.group.start(name, argv, env)
        self.children[name] = child
        wait_healthy(child, f"http://127.0.0.1:{self.ports[name]}/readyz")
        return child

    def logs(self, name: str) -> str:
        """Everything the service has logged so far."""
        path = self.children[name].log_path
        return "" if path is None or not path.exists() else path.read_text(errors="replace")

    def kill_hard(self, name: str) -> None:
        self.children[name].kill_hard()

    def stop(self) -> None:
        self.group.stop_all()

    async def issue_key(self, tenant_name: str) -> str:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.mongo_url, timeoutMS=10_000
        )
        try:
            keys = ApiKeyStore(client[self.database])
            await keys.ensure_indexes()
            tenant_id = await keys.create_tenant(tenant_name)
            return await keys.issue_key(tenant_id)
        finally:
            await client.close()

    async def sim_tasks(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.sim_url) as client:
            answer = await client.get("/__sim/tasks")
            answer.raise_for_status()
            body = answer.json()
            tasks: list[dict[str, Any]] = body["tasks"] if isinstance(body, dict) else body
            return tasks

    async def sim_task(self, task_uuid: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.sim_url) as client:
            answer = await client.get(f"/__sim/tasks/{task_uuid}")
            answer.raise_for_status()
            result: dict[str, Any] = answer.json()
            return result


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, deadline_s: float = 60, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something other than None, or fail at the deadline."""
    stop_at = time.monotonic() + deadline_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > stop_at:
            raise AssertionError(f"{what} not reached within {deadline_s} s")
        await asyncio.sleep(0.2)  # between probes; the deadline bounds the wait


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


def make_stack(amqp_url: str, mongo_url: str, log_dir: Path, **env: str) -> Stack:
    """A stack of its own prefix and database; ``env`` overrides the services' settings."""
    tag = uuid.uuid4().hex[:8]
    return Stack(
        amqp_url=amqp_url,
        mongo_url=mongo_url,
        prefix=f"e2e-{tag}.",
        database=f"e2e_{tag}",
        log_dir=log_dir,
        extra_env=env,
    )


async def cleanup(stack: Stack) -> None:
    connection = await aio_pika.connect_robust(stack.amqp_url)
    try:
        await delete_topology_queues(connection, stack.topology_settings())
    finally:
        await connection.close()
