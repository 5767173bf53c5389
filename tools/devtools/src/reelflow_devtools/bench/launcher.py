"""reelflow for a benchmark: the launcher's stack, plus what the benchmark measures of it.

One queue prefix and one database per run, free ports, every wait with a deadline;
the queues are deleted again at the end so runs leave nothing on the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import httpx
from aio_pika.abc import AbstractQueue
from pymongo.errors import PyMongoError

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.broker.dlq import dead_letter_depths
from reelflow_common.topology import PROJECT_FINISHED_BINDING, Topology
from reelflow_devtools.bench.client import BenchError
from reelflow_devtools.connections import amqp, mongo
from reelflow_devtools.launcher import SERVICES, Simulator, Stack
from reelflow_devtools.launcher import StackConfig as LaunchConfig
from reelflow_devtools.processes import Child
from reelflow_devtools.rabbitmq import LOCAL_AMQP_URL, is_local
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_submitter.settings import Settings as SubmitterSettings

PUBLISHED = "reelflow_published_total{"
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 (a local simulator's path segment)


#: the simulator's seed in every benchmark stack: its latencies and faults repeat run after run
SIM_SEED = 7
#: how long an unused tenant lane of a benchmark run outlives it
_LANE_EXPIRES_S = 120.0
#: the settings that follow the provider's clock: how long to wait for Runware (every
#: poll_* and retry_* setting in seconds), how long a clip may take (and its task be
#: followed late after it timed out), when the reconciler steps in. Everything else
#: (timeouts, pings, caches, keep-alives) is a wall-clock bound of one operation or
#: connection, never compressed.
SCHEDULE_PREFIXES = ("poll_", "retry_", "reconcile_")
SCHEDULE_NAMES = frozenset(
    {"lease_s", "not_found_grace_s", "late_follow_s", "late_follow_max_delay_s"}
)
#: what a stack timed in real seconds keeps at production values: the safety nets (with
#: a zero-latency provider at a high speedup, compressed ones would time clips out behind
#: a backlog; the late follow that comes after the ceiling with it) and periodic
#: background work (it costs database operations per real second, so compressing it
#: would charge the throughput runs for work production does not do)
REAL_TIME = frozenset(
    {
        "poll_max_age_s",
        "late_follow_s",
        "lease_s",
        "reconcile_interval_s",
        "reconcile_grace_s",
        "poll_stats_interval_s",
    }
)


def production_seconds() -> dict[str, float]:
    """Every service's schedule setting in seconds (:data:`SCHEDULE_PREFIXES`), at its
    production default."""
    found: dict[str, float] = {}
    for settings in (ApiSettings, NotifierSettings, PollerSettings, SubmitterSettings):
        for name, field in settings.model_fields.items():
            schedule = name.startswith(SCHEDULE_PREFIXES) or name in SCHEDULE_NAMES
            if schedule and name.endswith("_s") and isinstance(field.default, int | float):
                found[name] = float(field.default)
    return found


def compressed(speedup: float, *, keep: frozenset[str] = frozenset()) -> dict[str, float]:
    """Production schedule settings divided by ``speedup``, but those in ``keep``."""
    return {
        name: seconds if name in keep else seconds / speedup
        for name, seconds in production_seconds().items()
    }


@dataclass(frozen=True)
class StackConfig:
    """What the benchmark varies: simulator speed (the settings follow it), webhooks."""

    amqp_url: str = LOCAL_AMQP_URL
    sim_speedup: float = 100.0
    #: settings left at production values (see :data:`REAL_TIME`)
    keep: frozenset[str] = REAL_TIME
    webhooks: bool = False
    log_level: str = "INFO"
    #: a real MongoDB; None starts the embedded SecantusDB
    mongo_url: str | None = None
    #: more ``REELFLOW_*`` settings, over the compressed ones
    extra: tuple[tuple[str, str], ...] = ()

    def seconds(self) -> dict[str, float]:
        """The services' schedule settings: production, compressed by the speedup."""
        return compressed(self.sim_speedup, keep=self.keep)

    def simulator(self) -> Simulator:
        """The simulator of a stack of this configuration (the task-queue baseline's too)."""
        return Simulator(speedup=self.sim_speedup, seed=SIM_SEED)

    def launch_config(self, run_dir: Path, prefix: str) -> LaunchConfig:
        """The launcher's configuration of a benchmark run under ``prefix``."""
        settings = {
            f"REELFLOW_{name.upper()}": f"{value:g}" for name, value in self.seconds().items()
        }
        # A run's tenant lanes are not in its topology's names: the broker deletes them
        # once unused, minutes after the run rather than the production week.
        settings["REELFLOW_LANE_EXPIRES_S"] = f"{_LANE_EXPIRES_S:g}"
        return LaunchConfig(
            run_dir=run_dir,
            amqp_url=self.amqp_url,
            amqp_prefix=prefix,
            mongo_url=self.mongo_url,
            database=prefix.rstrip(".").replace("-", "_"),
            simulator=self.simulator(),
            settings=settings | {"REELFLOW_LOG_LEVEL": self.log_level} | dict(self.extra),
            webhook_secret=WEBHOOK_SECRET if self.webhooks else None,
            http_host="127.0.0.1",
        )


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of one process, in KiB, from /proc/<pid>/status; {} if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in fields}


def embedded_mongo_pid(mongo_url: str) -> int | None:
    """The embedded MongoDB this process started at ``mongo_url``, if any.

    A child naming ``secantusd`` started with the URL's ``--port``: the benchmark
    has two stacks up at once (``bench.rounds``), each on a server of its own.
    """
    try:
        port = urlsplit(mongo_url).port
    except ValueError:  # several hosts (a replica set): not a server of ours
        return None
    if port is None:
        return None
    wanted = f"\0--port\0{port}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it exited while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"secantusd" in cmdline and wanted in cmdline:
            return int(entry.name)
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time one process has used so far, from /proc/<pid>/stat; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine, from /proc; None if none is seen.

    The listening socket's inode from /proc/net/tcp(6), then the process holding it
    among everyone's open files (a process of another user hides its files: None).
    """
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl, local address, remote address, state, ..., inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:  # exited, or not ours to look at
            continue
    return None


def process_ids(children: Mapping[str, Child], mongo_url: str) -> dict[str, int]:
    """Every process of a stack: its live children, and its embedded MongoDB if it has one."""
    found = {name: child.process.pid for name, child in children.items() if child.alive()}
    mongo = embedded_mongo_pid(mongo_url)
    if mongo is not None:
        found["mongo"] = mongo
    return found


def processes_cpu_seconds(children: Mapping[str, Child], mongo_url: str) -> dict[str, float]:
    """User + system CPU time each process of a stack has used so far (:func:`process_ids`)."""
    found: dict[str, float] = {}
    for name, pid in process_ids(children, mongo_url).items():
        used = cpu_seconds(pid)
        if used is not None:
            found[name] = used
    return found


def broker_cpu_seconds(amqp_url: str) -> float | None:
    """CPU time RabbitMQ has used so far when it runs on this machine (beam.smp); else None.

    The whole broker's: what else uses it at the same time is counted too.
    """
    url = urlsplit(amqp_url)
    if not is_local(url.hostname):
        return None
    pid = listening_pid(url.port or 5672)
    return None if pid is None else cpu_seconds(pid)


@asynccontextmanager
async def finished_projects(
    amqp_url: str, exchange: str, routing_key: str = PROJECT_FINISHED_BINDING
) -> AsyncIterator[FinishedProjects]:
    """Projects' end events (``routing_key``) from now on, off ``exchange``: no database read."""
    async with amqp(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key)
        yield FinishedProjects(queue)


class FinishedProjects:
    """The ``project.finished`` events of one exclusive queue."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self.finished_at: dict[str, float] = {}

    async def wait(self, project_ids: Iterable[str], *, deadline_s: float) -> float:
        """Until every one of ``project_ids`` has finished; the wall time the last one was seen."""
        waiting = set(project_ids) - set(self.finished_at)
        async with asyncio.timeout(deadline_s):
            async with self._queue.iterator() as events:
                async for message in events:
                    await message.ack()
                    project_id = json.loads(message.body)["project_id"]
                    self.finished_at[project_id] = time.time()
                    waiting.discard(project_id)
                    if not waiting:
                        break
        return max(self.finished_at.values(), default=time.time())

    async def wait_or_fail(
        self, project_ids: Iterable[str], *, deadline_s: float, what: str
    ) -> float:
        """As :meth:`wait`, but past the deadline a :class:`BenchError` naming ``what``."""
        try:
            return await self.wait(project_ids, deadline_s=deadline_s)
        except TimeoutError:
            raise BenchError(f"{what} not finished after {deadline_s:g} s") from None


class BenchStack(Stack):
    """A running stack and the processes' memory and CPU, read from /proc."""

    @property
    def database(self) -> str:
        return self.config.database

    @property
    def amqp_url(self) -> str:
        return self.config.amqp_url

    @property
    def queue_prefix(self) -> str:
        """The prefix of every queue of this stack's, and of the benchmark's own beside them."""
        return self.config.amqp_prefix

    def memory_kib(self) -> dict[str, dict[str, int]]:
        """VmRSS and VmHWM (peak) of each process, in KiB."""
        pids = process_ids(self.children, self.mongo_url)
        found = {name: memory_kib(pid) for name, pid in pids.items()}
        return {name: memory for name, memory in found.items() if memory}

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time each process has used so far, from /proc/<pid>/stat."""
        return processes_cpu_seconds(self.children, self.mongo_url)

    def broker_cpu_seconds(self) -> float | None:
        """RabbitMQ's CPU time so far (:func:`broker_cpu_seconds`)."""
        return broker_cpu_seconds(self.config.amqp_url)

    async def confirmed_publishes(self) -> dict[str, int]:
        """Messages each service has published and RabbitMQ confirmed, from its /metrics."""
        found: dict[str, int] = {}
        async with httpx.AsyncClient(timeout=30) as client:
            for name in SERVICES:
                answer = await client.get(f"{self.url(name)}/metrics")
                answer.raise_for_status()
                found[name] = int(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in answer.text.splitlines()
                        if line.startswith(PUBLISHED) and 'result="confirmed"' in line
                    )
                )
        return found

    def finished_projects(self) -> AbstractAsyncContextManager[FinishedProjects]:
        """``project.finished`` events from now on, off the event exchange (no database read)."""
        topology = Topology.from_settings(self.topology_settings())
        return finished_projects(self.config.amqp_url, topology.events_exchange)

    def dead_children(self) -> list[str]:
        return [name for name, child in self.children.items() if not child.alive()]

    async def dead_letters(self) -> dict[str, int]:
        """Messages in each dead-letter queue, by DLQ name."""
        topology = Topology.from_settings(self.topology_settings())
        async with amqp(self.config.amqp_url) as connection:
            channel = await connection.channel()
            depths = await dead_letter_depths(channel, topology)
            return {topology.dead_letter_queue(queue): depth for queue, depth in depths.items()}


async def broker_answers(amqp_url: str, *, timeout_s: float = 10) -> str | None:
    """None if RabbitMQ completes a handshake within the timeout, else what went wrong."""
    try:
        async with amqp(amqp_url, timeout_s=timeout_s):
            return None
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While inside, SIGTERM ends this process as an exception does, through every ``finally``.

    By default SIGTERM ends Python at once, skipping :func:`running_stack`'s
    teardown: a run stopped so (``timeout``, a killed job) left its ~50 quorum
    queues on the shared broker, which wedged under such leftovers
    (docs/ARCHITECTURE.md, open files on RabbitMQ 3.10).
    """

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def running_stack(config: StackConfig, run_dir: Path) -> Iterator[BenchStack]:
    """Start everything on a fresh embedded database, yield the stack; stop it, delete its queues.

    The embedded database's data and the logs of an earlier run in ``run_dir``
    are removed first: a database that kept every earlier run's projects grew
    slower with each run (a fairness flood's 2,000 clips a run).
    """
    shutil.rmtree(run_dir / "mongo-data", ignore_errors=True)
    shutil.rmtree(run_dir / "logs", ignore_errors=True)
    stack = BenchStack(config.launch_config(run_dir, f"bench-{uuid.uuid4().hex[:8]}."))
    with sigterm_as_exit():
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
    async def drop() -> None:
        async with mongo(stack.mongo_url) as client:
            await client.drop_database(stack.config.database)

    try:
        asyncio.run(drop())
    except PyMongoError as exc:
        print(f"bench: could not drop the database {stack.config.database}: {exc}", flush=True)
