"""reelflow for a benchmark: embedded MongoDB, the simulator and the four services as processes.

One queue prefix and one database per run, free ports, every wait with a deadline;
the queues are deleted again at the end so runs leave nothing on the broker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from reelflow_common.backoff import Backoff
from reelflow_common.store import ApiKeyStore
from reelflow_common.topology import (
    CHECK_CLIP,
    EVENTS_EXCHANGE,
    HINTED_CHECK,
    SUBMIT_CLIP,
    WORK_QUEUES,
    Topology,
)
from reelflow_devtools.database import prepare_database
from reelflow_devtools.embedded_mongo import embedded_mongo, free_port
from reelflow_devtools.processes import (
    Child,
    ProcessGroup,
    console_script,
    wait_for_sim_url,
    wait_healthy,
)

SERVICES = ("api", "notifier", "submitter", "poller")
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 (a local simulator's path segment)


@dataclass(frozen=True)
class StackConfig:
    """What the benchmark varies: simulator speed, the poll ladder, webhooks on or off."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    sim_speedup: float = 100.0
    poll_initial_delay_s: float = 0.3
    poll_backoff: float = 1.5
    poll_max_delay_s: float = 1.0
    retry_initial_delay_s: float = 0.2
    retry_max_delay_s: float = 1.0
    webhooks: bool = False
    log_level: str = "INFO"
    #: a real MongoDB; None starts the embedded SecantusDB
    mongo_url: str | None = None

    def poll_backoff_schedule(self) -> Backoff:
        return Backoff(
            first_s=self.poll_initial_delay_s, cap_s=self.poll_max_delay_s, factor=self.poll_backoff
        )

    def poll_ladder_ms(self) -> tuple[int, ...]:
        return self.poll_backoff_schedule().rungs_ms()

    def topology(self, prefix: str) -> Topology:
        retry = Backoff(first_s=self.retry_initial_delay_s, cap_s=self.retry_max_delay_s)
        return Topology(
            prefix=prefix,
            backoffs={
                SUBMIT_CLIP: retry,
                CHECK_CLIP: self.poll_backoff_schedule(),
                HINTED_CHECK: retry,
            },
            retry=retry,
        )


@dataclass
class BenchStack:
    """The running processes and how to reach them."""

    config: StackConfig
    run_dir: Path
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}.")
    mongo_url: str = ""
    sim_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def database(self) -> str:
        return self.prefix.rstrip(".").replace("-", "_")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['notifier']}"

    def service_env(self) -> dict[str, str]:
        config = self.config
        env = {
            "REELFLOW_AMQP_URL": config.amqp_url,
            "REELFLOW_AMQP_PREFIX": self.prefix,
            "REELFLOW_MONGO_URL": self.mongo_url,
            "REELFLOW_MONGO_DATABASE": self.database,
            "REELFLOW_RUNWARE_BASE_URL": self.sim_url,
            "REELFLOW_RUNWARE_API_KEY": "sim-key",
            "REELFLOW_POLL_INITIAL_DELAY_S": str(config.poll_initial_delay_s),
            "REELFLOW_POLL_BACKOFF": str(config.poll_backoff),
            "REELFLOW_POLL_MAX_DELAY_S": str(config.poll_max_delay_s),
            "REELFLOW_RETRY_INITIAL_DELAY_S": str(config.retry_initial_delay_s),
            "REELFLOW_RETRY_MAX_DELAY_S": str(config.retry_max_delay_s),
            "REELFLOW_LOG_FORMAT": "json",
            "REELFLOW_LOG_LEVEL": config.log_level,
            "REELFLOW_HTTP_HOST": "127.0.0.1",
        }
        if config.webhooks:
            env["REELFLOW_PUBLIC_BASE_URL"] = self.api_url
            env["REELFLOW_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        return env

    def process_ids(self) -> dict[str, int]:
        """Every process of the stack: our children, and the embedded MongoDB among them."""
        found = {name: child.process.pid for name, child in self.children.items() if child.alive()}
        known = set(found.values())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in known:
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # it exited while we looked
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"secantusd" in cmdline:
                found["mongo"] = int(entry.name)
        return found

    def memory_kib(self) -> dict[str, dict[str, int]]:
        """VmRSS and VmHWM (peak) of each process, in KiB, from /proc/<pid>/status."""
        found: dict[str, dict[str, int]] = {}
        for name, pid in self.process_ids().items():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            found[name] = {
                key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in fields
            }
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time each process has used so far, from /proc/<pid>/stat."""
        tick = os.sysconf("SC_CLK_TCK")
        found: dict[str, float] = {}
        for name, pid in self.process_ids().items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return found

    def dead_children(self) -> list[str]:
        return [name for name, child in self.children.items() if not child.alive()]

    async def issue_key(self, tenant_name: str) -> str:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.mongo_url, timeoutMS=10_000
        )
        try:
            keys = ApiKeyStore(client[self.database])
            await keys.ensure_indexes()
            return await keys.issue_key(await keys.create_tenant(tenant_name))
        finally:
            await client.close()

    async def sim_get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.sim_url, timeout=60) as client:
            answer = await client.get(path)
            answer.raise_for_status()
            return answer.json()

    async def dead_letters(self) -> dict[str, int]:
        """Messages in each dead-letter queue (a passive declare reads the count)."""
        topology = self.config.topology(self.prefix)
        connection = await aio_pika.connect(self.config.amqp_url, timeout=15)
        try:
            channel = await connection.channel()
            depths = {}
            for work_queue in WORK_QUEUES:
                name = topology.dead_letter_queue(work_queue)
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
            return depths
        finally:
            await connection.close()

    async def delete_queues(self) -> None:
        """Every queue and the exchange this run's topology declared."""
        topology = self.config.topology(self.prefix)
        names = []
        for work_queue in WORK_QUEUES:
            names += [topology.queue(work_queue), topology.dead_letter_queue(work_queue)]
            names += [topology.wait_queue(work_queue, ms) for ms in topology.ladders[work_queue]]
        connection = await aio_pika.connect(self.config.amqp_url, timeout=15)
        try:
            channel = await connection.channel()
            for name in names:
                await channel.queue_delete(name)
            await channel.exchange_delete(topology.name(EVENTS_EXCHANGE))
        finally:
            await connection.close()


async def broker_answers(amqp_url: str, *, timeout_s: float = 10) -> str | None:
    """None if RabbitMQ completes a handshake within the timeout, else what went wrong."""
    try:
        connection = await aio_pika.connect(amqp_url, timeout=timeout_s)
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


@contextmanager
def running_stack(config: StackConfig, run_dir: Path) -> Iterator[BenchStack]:
    """Start everything, yield the stack, stop everything in reverse order."""
    stack = BenchStack(config, run_dir)
    group = ProcessGroup(log_dir=run_dir / "logs")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with ExitStack() as exits:
        if config.mongo_url:
            stack.mongo_url = config.mongo_url
            exits.callback(_drop_database, stack)
        else:
            stack.mongo_url = exits.enter_context(
                embedded_mongo(run_dir / "mongo-data", log_path=run_dir / "logs" / "mongo.log")
            )
        # Exits run in reverse: the services stop first, then their queues go.
        exits.callback(_delete_queues, stack)
        exits.callback(group.stop_all)
        sim = group.start(
            "runware-sim",
            [console_script("reelflow-runware-sim"), "--port", "0", "--seed", "7"],
            {"RUNWARE_SIM_SPEEDUP": str(config.sim_speedup)},
        )
        stack.children["runware-sim"] = sim
        stack.sim_url = wait_for_sim_url(sim)
        asyncio.run(prepare_database(stack.mongo_url, stack.database))
        stack.ports = {name: free_port() for name in SERVICES}
        env = stack.service_env()
        for name in SERVICES:
            port = stack.ports[name]
            child = group.start(
                name, [console_script(f"reelflow-{name}")], env | {"REELFLOW_HTTP_PORT": str(port)}
            )
            stack.children[name] = child
            wait_healthy(child, f"http://127.0.0.1:{port}/readyz")
        yield stack


def _delete_queues(stack: BenchStack) -> None:
    try:
        asyncio.run(stack.delete_queues())
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
        print(f"bench: could not delete the queues of {stack.prefix}: {exc}", flush=True)


def _drop_database(stack: BenchStack) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_url, timeoutMS=10_000)
    try:
        client.drop_database(stack.database)
    except PyMongoError as exc:
        print(f"bench: could not drop the database {stack.database}: {exc}", flush=True)
    finally:
        client.close()
