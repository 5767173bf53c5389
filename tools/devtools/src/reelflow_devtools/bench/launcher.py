"""reelflow for a benchmark: the launcher's stack, plus what the benchmark measures of it.

One queue prefix and one database per run, free ports, every wait with a deadline;
the queues are deleted again at the end so runs leave nothing on the broker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from reelflow_common.backoff import Backoff
from reelflow_common.broker.dlq import dead_letter_depths
from reelflow_common.topology import Topology
from reelflow_devtools.launcher import Simulator, Stack
from reelflow_devtools.launcher import StackConfig as LaunchConfig
from reelflow_devtools.rabbitmq import LOCAL_AMQP_URL

WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 (a local simulator's path segment)


@dataclass(frozen=True)
class StackConfig:
    """What the benchmark varies: simulator speed, the poll ladder, webhooks on or off."""

    amqp_url: str = LOCAL_AMQP_URL
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

    def poll_ladder_ms(self) -> tuple[int, ...]:
        """The poller's wait queues, as the services build them from these settings."""
        poll = Backoff(
            first_s=self.poll_initial_delay_s, cap_s=self.poll_max_delay_s, factor=self.poll_backoff
        )
        return poll.rungs_ms()

    def launch_config(self, run_dir: Path, prefix: str) -> LaunchConfig:
        """The launcher's configuration of a benchmark run under ``prefix``."""
        return LaunchConfig(
            run_dir=run_dir,
            amqp_url=self.amqp_url,
            amqp_prefix=prefix,
            mongo_url=self.mongo_url,
            database=prefix.rstrip(".").replace("-", "_"),
            simulator=Simulator(speedup=self.sim_speedup, seed=7),
            settings={
                "REELFLOW_POLL_INITIAL_DELAY_S": str(self.poll_initial_delay_s),
                "REELFLOW_POLL_BACKOFF": str(self.poll_backoff),
                "REELFLOW_POLL_MAX_DELAY_S": str(self.poll_max_delay_s),
                "REELFLOW_RETRY_INITIAL_DELAY_S": str(self.retry_initial_delay_s),
                "REELFLOW_RETRY_MAX_DELAY_S": str(self.retry_max_delay_s),
                "REELFLOW_LOG_LEVEL": self.log_level,
            },
            webhook_secret=WEBHOOK_SECRET if self.webhooks else None,
            http_host="127.0.0.1",
        )


class BenchStack(Stack):
    """A running stack and the processes' memory and CPU, read from /proc."""

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

    async def dead_letters(self) -> dict[str, int]:
        """Messages in each dead-letter queue, by DLQ name."""
        topology = Topology.from_settings(self.topology_settings())
        connection = await aio_pika.connect(self.config.amqp_url, timeout=15)
        try:
            channel = await connection.channel()
            depths = await dead_letter_depths(channel, topology)
            return {topology.dead_letter_queue(queue): depth for queue, depth in depths.items()}
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
    """Start everything, yield the stack; stop everything, then delete its queues."""
    stack = BenchStack(config.launch_config(run_dir, f"bench-{uuid.uuid4().hex[:8]}."))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        _delete_queues(stack)
        if config.mongo_url:
            _drop_database(stack)


def _delete_queues(stack: BenchStack) -> None:
    try:
        asyncio.run(stack.delete_queues())
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
        print(
            f"bench: could not delete the queues of {stack.config.amqp_prefix}: {exc}", flush=True
        )


def _drop_database(stack: BenchStack) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_url, timeoutMS=10_000)
    try:
        client.drop_database(stack.config.database)
    except PyMongoError as exc:
        print(f"bench: could not drop the database {stack.config.database}: {exc}", flush=True)
    finally:
        client.close()
