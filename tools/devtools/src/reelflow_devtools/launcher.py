"""reelflow as processes on one machine: the one launcher of ``make run``, the benchmark
and the end-to-end tests.

A :class:`Stack` starts the embedded MongoDB (unless given a URL), the Runware
simulator (unless told to use the real Runware), prepares the database, then
starts the four services, each configured only by its environment, and waits
until each answers. It stops them the other way round: the services
together, each draining its in-flight messages, then the simulator, then the
database. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reelflow_common.broker.stacks import delete_topology
from reelflow_common.ops import EXIT_PORT_TAKEN
from reelflow_common.settings import AmqpSettings, TopologySettings
from reelflow_common.store import ApiKeyStore
from reelflow_common.topology import Topology
from reelflow_devtools.connections import amqp, mongo
from reelflow_devtools.database import prepare_database
from reelflow_devtools.embedded_mongo import MONGODB, embedded_mongo
from reelflow_devtools.ports import free_port, release_port
from reelflow_devtools.processes import (
    Child,
    Occupied,
    ProcessGroup,
    StartError,
    console_script,
    stop_children,
    wait_for_sim_url,
    wait_healthy,
    wait_ready,
    wait_stopped,
)
from reelflow_devtools.rabbitmq import LOCAL_AMQP_URL

#: they start together and stop together
SERVICES = ("api", "notifier", "submitter", "poller")
DEFAULT_PORTS = {"api": 8000, "notifier": 8001, "submitter": 8002, "poller": 8003}
SIMULATOR = "runware-sim"
SIM_API_KEY = "sim-key"
#: beyond the drain: a stopping process still closes its connections and exits
STOP_MARGIN_S = 5.0
DRAIN_TIMEOUT_S = float(AmqpSettings.model_fields["drain_timeout_s"].default)

Announce = Callable[[str, str], None]
_PREFIX = "REELFLOW_"


def _quiet(_what: str, _detail: str) -> None:
    pass


@dataclass(frozen=True)
class Simulator:
    """The Runware simulator in place of Runware."""

    speedup: float = 10.0
    #: a fixed seed makes latencies and faults repeat run after run
    seed: int | None = None
    #: simulated seconds a videoURL serves after its video is done (Runware's ``ttl``)
    video_url_ttl: float | None = None
    #: more ``RUNWARE_SIM_*`` variables: fault rates, webhook faults (see its README)
    settings: Mapping[str, str] = field(default_factory=dict)
    #: set: its tasks (and port) are kept here across runs, as Runware keeps running them
    state_file: Path | None = None


@dataclass(frozen=True)
class StackConfig:
    """Where a stack runs and how its services are configured."""

    #: logs in ``run_dir/logs``; the embedded MongoDB's data in ``run_dir/mongo-data``
    run_dir: Path
    amqp_url: str = LOCAL_AMQP_URL
    amqp_prefix: str = ""
    #: a MongoDB to use; None starts the embedded SecantusDB
    mongo_url: str | None = None
    database: str = "reelflow"
    #: None: the services call the real Runware as their environment configures it
    simulator: Simulator | None = field(default_factory=Simulator)
    #: by service; None picks free ports
    ports: Mapping[str, int] | None = None
    #: more ``REELFLOW_*`` variables for every service
    settings: Mapping[str, str] = field(default_factory=dict)
    #: set: Runware (the simulator) calls the api back at its own URL with this secret
    webhook_secret: str | None = None
    #: ``REELFLOW_HTTP_HOST``; None leaves the services' default (every interface)
    http_host: str | None = None
    log_format: str = "json"
    #: what the start waits for from each service: its ``/readyz`` with every check true,
    #: RabbitMQ and MongoDB linked (True); or only its ``/healthz`` (False: each service
    #: waits for what is missing by itself)
    wait_linked: bool = True
    drain_timeout_s: float = DRAIN_TIMEOUT_S


def start_simulator(group: ProcessGroup, simulator: Simulator) -> Child:
    """The simulator as ``simulator`` says, started in ``group`` (its URL: ``wait_for_sim_url``)."""
    argv = [console_script("reelflow-runware-sim"), "--port", str(simulator_port(simulator))]
    if simulator.seed is not None:
        argv += ["--seed", str(simulator.seed)]
    if simulator.state_file is not None:
        argv += ["--state-file", str(simulator.state_file)]
    env = {"RUNWARE_SIM_SPEEDUP": str(simulator.speedup)}
    if simulator.video_url_ttl is not None:
        env["RUNWARE_SIM_VIDEO_URL_TTL"] = str(simulator.video_url_ttl)
    env |= simulator.settings
    return group.start(SIMULATOR, argv, env)


def simulator_port(simulator: Simulator) -> int:
    """0 (the simulator binds any free port); but for a first run that keeps its state, a
    port outgoing connections never take (:func:`free_port`): the simulator listens on it
    again in the runs after (given 0 and its state file), so its videoURLs stay valid."""
    state_file = simulator.state_file
    if state_file is None or state_file.exists():
        return 0
    return free_port()


async def sim_get(sim_url: str, path: str) -> Any:
    """A GET on the simulator's own API (``/__sim/...``), as JSON."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=60) as client:
        answer = await client.get(path)
        answer.raise_for_status()
        return answer.json()


async def sim_tasks(sim_url: str) -> list[dict[str, Any]]:
    """Every task the simulator has seen."""
    body = await sim_get(sim_url, "/__sim/tasks")
    tasks: list[dict[str, Any]] = body["tasks"] if isinstance(body, dict) else body
    return tasks


class Stack:
    """The running processes of one configuration, and how to reach them."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.group = ProcessGroup(log_dir=config.run_dir / "logs")
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        self.mongo_url = config.mongo_url or ""
        self.sim_url = ""
        self._exits = ExitStack()
        #: whether ``ports`` were picked free at the start (released at the stop)
        self._picked_ports = False

    # --- where things are --------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def api_url(self) -> str:
        return self.url("api")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['notifier']}"

    @property
    def log_dir(self) -> Path:
        return self.config.run_dir / "logs"

    def service_env(self) -> dict[str, str]:
        """The environment every service gets (each adds its ``REELFLOW_HTTP_PORT``)."""
        config = self.config
        env = {
            "REELFLOW_AMQP_URL": config.amqp_url,
            "REELFLOW_MONGO_URL": self.mongo_url,
            "REELFLOW_MONGO_DATABASE": config.database,
            "REELFLOW_LOG_FORMAT": config.log_format,
            "REELFLOW_DRAIN_TIMEOUT_S": str(config.drain_timeout_s),
        }
        if config.amqp_prefix:
            env["REELFLOW_AMQP_PREFIX"] = config.amqp_prefix
        if config.http_host is not None:
            env["REELFLOW_HTTP_HOST"] = config.http_host
        if config.simulator is not None:
            just_the_sim = json.dumps([httpx.URL(self.sim_url).host])
            env |= {
                "REELFLOW_RUNWARE_BASE_URL": self.sim_url,
                "REELFLOW_RUNWARE_API_KEY": SIM_API_KEY,
                # Its videos are copied from it (when copies are on): plain http, on a
                # loopback address, which the copier refuses unless the host is internal.
                "REELFLOW_VIDEO_COPY_ALLOWED_HOSTS": just_the_sim,
                "REELFLOW_VIDEO_COPY_INTERNAL_HOSTS": just_the_sim,
                "REELFLOW_VIDEO_COPY_ALLOW_HTTP": "true",
            }
        if config.webhook_secret is not None:
            env |= {
                "REELFLOW_PUBLIC_BASE_URL": self.api_url,
                "REELFLOW_WEBHOOK_SECRET": config.webhook_secret,
            }
        if self.ports.get("notifier", DEFAULT_PORTS["notifier"]) != DEFAULT_PORTS["notifier"]:
            # The dashboard otherwise looks for the notifier on its default port of the
            # page's host (which, left unset, also works from another machine).
            env["REELFLOW_PUBLIC_WS_URL"] = self.ws_url
        return env | dict(config.settings)

    def topology_settings(self) -> TopologySettings:
        """The topology settings the services read: their environment, as they get it."""
        environment = {**os.environ, **self.service_env()}
        fields = TopologySettings.model_fields
        values = {
            name.removeprefix(_PREFIX).lower(): value
            for name, value in environment.items()
            if name.startswith(_PREFIX) and name.removeprefix(_PREFIX).lower() in fields
        }
        return TopologySettings.model_validate(values)

    # --- start and stop ----------------------------------------------------------------

    def start(self, announce: Announce = _quiet) -> None:
        """Start everything, in order; on any failure stop what did start, then raise."""
        try:
            self._start(announce)
        except BaseException:
            self.stop()
            raise

    def _start(self, announce: Announce) -> None:
        config = self.config
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if config.mongo_url is None:
            data = config.run_dir / "mongo-data"
            # In the group: its death is seen as a service's (first_dead).
            self.mongo_url = self._exits.enter_context(embedded_mongo(data, group=self.group))
            announce("mongodb", f"embedded SecantusDB at {self.mongo_url} (data in {data})")
        else:
            announce("mongodb", "the given MongoDB")
        if config.simulator is not None:
            self._start_simulator(config.simulator)
            announce(
                "runware", f"simulator at {self.sim_url} (speedup {config.simulator.speedup:g})"
            )
        else:
            announce("runware", "the real Runware API")
        upgraded = asyncio.run(prepare_database(self.mongo_url, config.database))
        if upgraded:
            announce("mongodb", f"upgraded {upgraded} project documents to the current shape")
        self._picked_ports = not config.ports
        self.ports = dict(config.ports or {name: free_port() for name in SERVICES})
        # Together: none needs another to start, and the database is prepared.
        announce("services", f"starting {', '.join(SERVICES)}; each line below once it answers")
        started = [self._spawn_service(name) for name in SERVICES]
        for child in started:
            self._wait_healthy(child)
            announce(child.name, f"{self.url(child.name)}  (log: {child.log_path})")

    def _start_simulator(self, simulator: Simulator) -> None:
        sim = start_simulator(self.group, simulator)
        self.children[SIMULATOR] = sim
        self.sim_url = wait_for_sim_url(sim)

    def start_service(self, name: str) -> Child:
        """Start ``name`` (again, if it ran before) and wait until it answers."""
        child = self._spawn_service(name)
        self._wait_healthy(child)
        return child

    def _wait_healthy(self, child: Child) -> None:
        """:func:`wait_ready` (or :func:`wait_healthy`, as ``wait_linked`` says); a service
        that found its port taken is :class:`Occupied`.

        Its port was free when the stack was configured (``make run`` checks), but
        nothing holds it until the service binds it: another process can take it in
        between (another stack starting at the same moment).
        """
        base = self.url(child.name)
        try:
            if self.config.wait_linked:
                wait_ready(child, f"{base}/readyz")
            else:
                wait_healthy(child, f"{base}/healthz")
        except StartError:
            if child.process.returncode != EXIT_PORT_TAKEN:
                raise
            port = self.ports[child.name]
            raise Occupied(
                f"port {port} ({child.name}) was taken by another process while the stack"
                " started; what had started is stopped. Stop what listens there"
            ) from None

    def _spawn_service(self, name: str) -> Child:
        argv = [console_script(f"reelflow-{name}")]
        env = self.service_env() | {"REELFLOW_HTTP_PORT": str(self.ports[name])}
        previous = self.children.get(name)
        if previous is not None:
            child = self.group.restart(previous, argv, env)
        else:
            child = self.group.start(name, argv, env)
        self.children[name] = child
        return child

    def logs(self, name: str) -> str:
        """Everything ``name`` has logged so far."""
        path = self.children[name].log_path
        return "" if path is None or not path.exists() else path.read_text(errors="replace")

    def kill_hard(self, name: str) -> None:
        self.children[name].kill_hard()

    def first_dead(self) -> Child | None:
        """A process of the stack that has exited: a service, the simulator, the database."""
        return self.group.first_dead()

    def stop(self) -> float:
        """Stop everything: the services together (each drains), then the rest; seconds taken."""
        began = time.monotonic()
        services = [self.children[name] for name in SERVICES if name in self.children]
        stop_children(services, timeout_s=self.config.drain_timeout_s + STOP_MARGIN_S)
        # Nothing needs the simulator or the database any more: both stop at once.
        # The database stops through its context (embedded_mongo), as it must be stopped.
        rest = [c for c in self.group.children if c.name not in (*SERVICES, MONGODB)]
        for child in rest:
            child.terminate()
        self._exits.close()
        wait_stopped(rest, timeout_s=STOP_MARGIN_S)
        self.group.children.clear()
        self.children.clear()
        if self._picked_ports:  # ours: picked free at the start
            for port in self.ports.values():
                release_port(port)
        return time.monotonic() - began

    # --- working with a running stack --------------------------------------------------

    async def issue_key(self, tenant_name: str) -> str:
        """A key of a new tenant called ``tenant_name``."""
        async with self._api_keys() as keys:
            return await keys.issue_key(await keys.create_tenant(tenant_name))

    async def ensure_dev_key(self, key: str | None = None) -> str:
        """A key of the ``dev`` tenant: ``key``, or a new one."""
        async with self._api_keys() as keys:
            _tenant, issued = await keys.ensure_dev_key(key)
            return issued

    @asynccontextmanager
    async def _api_keys(self) -> AsyncIterator[ApiKeyStore]:
        async with mongo(self.mongo_url) as client:
            yield ApiKeyStore(client[self.config.database])

    async def sim_get(self, path: str) -> Any:
        """A GET on the simulator's own API (``/__sim/...``), as JSON."""
        return await sim_get(self.sim_url, path)

    async def sim_tasks(self) -> list[dict[str, Any]]:
        """Every task the simulator has seen."""
        return await sim_tasks(self.sim_url)

    async def delete_queues(self) -> None:
        """Every queue and the exchange of this stack's topology (its prefix's)."""
        async with amqp(self.config.amqp_url) as connection:
            await delete_topology(connection, Topology.from_settings(self.topology_settings()))


@contextmanager
def running(config: StackConfig, announce: Announce = _quiet) -> Iterator[Stack]:
    """A started stack, stopped again on the way out."""
    stack = Stack(config)
    stack.start(announce)
    try:
        yield stack
    finally:
        stack.stop()
