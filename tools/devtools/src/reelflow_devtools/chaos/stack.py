"""reelflow as processes that can each be killed: its own RabbitMQ node and MongoDB, then the rest.

The broker is a node of the run's own (``rabbitmq.OwnNode``: own node name,
ports and data under the run's directory), never the machine's shared one; the
database is the embedded SecantusDB as a child process with its data on disk;
the simulator and the four services are the launcher's stack on top of them.
Everything is started from the main thread (the children's parent-death
signal follows the thread that starts them).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.chaos.plan import MONGODB, RABBITMQ, SERVICES, SIM_FAULTS, ChaosPlan
from reelflow_devtools.embedded_mongo import (
    mongo_command,
    mongo_url,
    wait_until_answering,
)
from reelflow_devtools.launcher import Simulator, StackConfig
from reelflow_devtools.ports import free_port
from reelflow_devtools.processes import Child, ProcessGroup, wait_ready, wait_stopped
from reelflow_devtools.rabbitmq import OwnNode

WEBHOOK_SECRET = "chaos-webhook-secret"  # noqa: S105 (a local run's path segment, known to the forger)
_MONGO_START_S = 60


class ChaosStack:
    """The run's processes, and how to kill and restart each of them."""

    def __init__(self, plan: ChaosPlan, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.group = ProcessGroup(log_dir=run_dir / "logs")
        self.rabbitmq = OwnNode(
            self.group, run_dir / "rabbitmq", name=f"reelflow-chaos-{free_port()}"
        )
        self.mongo_port = free_port()
        self.mongo: Child | None = None
        self.services = BenchStack(
            StackConfig(
                run_dir=run_dir,
                amqp_url=self.rabbitmq.url,
                mongo_url=mongo_url(self.mongo_port),
                database="reelflow_chaos",
                simulator=Simulator(speedup=plan.speedup, seed=plan.seed, settings=SIM_FAULTS),
                settings=plan.service_settings((run_dir / "videos").resolve()),
                webhook_secret=WEBHOOK_SECRET,
                http_host="127.0.0.1",
                # a restarted service is up once it answers: it waits for what is down itself
                wait_linked=False,
                drain_timeout_s=5,
            )
        )

    def start(self) -> None:
        """The broker node, the database, the simulator and the services, until all are ready."""
        try:
            self.rabbitmq.spawn()  # the slowest to start: the rest starts meanwhile
            self._start_mongo()
            self.services.start()  # each service waits for the broker by itself
            self.rabbitmq.wait_listening()
            for name in SERVICES:
                child = self.services.children[name]
                # every check true: the api and the notifier are ready (a 200 degraded)
                # while the broker is down after their first link, and the load must find
                # the link up
                wait_ready(child, f"{self.services.url(name)}/readyz", deadline_s=120)
        except BaseException:
            self.stop()
            raise

    def _start_mongo(self) -> None:
        data = self.run_dir / "mongo-data"
        argv = mongo_command(data, self.mongo_port, journaled=True)
        if self.mongo is None:
            self.mongo = self.group.start(MONGODB, argv, {})
        else:
            self.mongo = self.group.restart(self.mongo, argv, {})
        wait_until_answering(
            mongo_url(self.mongo_port), deadline_s=_MONGO_START_S, child=self.mongo
        )

    def kill(self, target: str) -> None:
        """SIGKILL: what a crashed machine or the OOM killer does."""
        if target == RABBITMQ:
            self.rabbitmq.kill_hard()
        elif target == MONGODB:
            if self.mongo is not None and self.mongo.alive():
                self.mongo.kill_hard()
        else:
            self.services.kill_hard(target)

    def stop_gracefully(self, service: str, bound_s: float) -> float | None:
        """SIGTERM, as a deploy sends: seconds until it exited; None past ``bound_s`` (SIGKILL)."""
        child = self.services.children[service]
        began = time.monotonic()
        child.terminate()
        try:
            child.process.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            child.kill_hard()
            return None
        return time.monotonic() - began

    def restart(self, target: str) -> None:
        """Start ``target`` again on its ports and data, and wait until it answers."""
        if target == RABBITMQ:
            self.rabbitmq.start()
        elif target == MONGODB:
            self._start_mongo()
        else:
            self.services.start_service(target)

    def died_on_their_own(self) -> list[str]:
        """Processes that exited without being killed."""
        dead = [name for name in SERVICES if not self.services.children[name].alive()]
        if self.mongo is not None and not self.mongo.alive():
            dead.append(MONGODB)
        child = self.rabbitmq.child
        if child is not None and not child.alive():
            dead.append(RABBITMQ)
        return dead

    def stop(self) -> None:
        """The services and the simulator (they drain), then the database and the broker."""
        self.services.stop()
        if self.mongo is not None:
            self.mongo.terminate()
            wait_stopped([self.mongo], timeout_s=15)
        self.rabbitmq.stop()
