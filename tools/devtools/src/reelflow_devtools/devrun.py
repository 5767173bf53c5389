"""``make run``: reelflow on one machine, on embedded defaults.

RabbitMQ from ``REELFLOW_AMQP_URL`` (default: the local broker, started if it is
installed but stopped); MongoDB from ``REELFLOW_MONGO_URL``, or else the embedded
SecantusDB with its data in ``.run/mongo-data``; the Runware simulator when no
``RUNWARE_API_KEY`` is set; then the four services. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from pymongo import AsyncMongoClient

from reelflow_common.store import ApiKeyStore
from reelflow_devtools.database import prepare_database
from reelflow_devtools.embedded_mongo import embedded_mongo
from reelflow_devtools.processes import (
    ProcessGroup,
    StartError,
    console_script,
    wait_for_sim_url,
    wait_healthy,
)

RUN_DIR = Path(".run")
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
SERVICES = (("api", 8000), ("notifier", 8001), ("submitter", 8002), ("poller", 8003))


def say(line: str = "") -> None:
    print(line, flush=True)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def ensure_rabbitmq(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if _reachable(host, port):
        say(f"  rabbitmq   {host}:{port} (running)")
        return
    server = shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )
    if host not in ("127.0.0.1", "localhost") or server is None:
        sys.exit(
            f"RabbitMQ is not reachable at {host}:{port}.\n"
            "Install and start it (Debian: sudo apt-get install rabbitmq-server), "
            "or point REELFLOW_AMQP_URL at a running broker."
        )
    say(f"  rabbitmq   starting the local broker ({server} -detached)")
    subprocess.run([server, "-detached"], check=False)  # noqa: S603 (fixed local path)
    deadline = time.monotonic() + 90
    while not _reachable(host, port):
        if time.monotonic() > deadline:
            sys.exit("RabbitMQ did not start within 90 s; see its log in /var/log/rabbitmq.")
        time.sleep(0.5)  # waiting for the broker to listen; bounded by the deadline
    say(f"  rabbitmq   {host}:{port} (started)")


async def ensure_dev_key(mongo_url: str, database: str) -> str:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url, timeoutMS=10_000)
    try:
        keys = ApiKeyStore(client[database])
        _tenant, key = await keys.ensure_dev_key(os.environ.get("REELFLOW_DEV_API_KEY"))
        return key
    finally:
        await client.close()


def main() -> None:
    RUN_DIR.mkdir(exist_ok=True)
    group = ProcessGroup(log_dir=RUN_DIR / "logs")
    env: dict[str, str] = {"REELFLOW_LOG_FORMAT": os.environ.get("REELFLOW_LOG_FORMAT", "json")}
    with ExitStack() as stack:
        stack.callback(group.stop_all)
        say("reelflow: starting")
        amqp_url = os.environ.get("REELFLOW_AMQP_URL", DEFAULT_AMQP_URL)
        ensure_rabbitmq(amqp_url)
        env["REELFLOW_AMQP_URL"] = amqp_url

        mongo_url = os.environ.get("REELFLOW_MONGO_URL")
        if mongo_url:
            say("  mongodb    REELFLOW_MONGO_URL")
        else:
            data = RUN_DIR / "mongo-data"
            mongo_url = stack.enter_context(embedded_mongo(data, log_path=RUN_DIR / "mongo.log"))
            say(f"  mongodb    embedded SecantusDB at {mongo_url} (data in {data})")
        env["REELFLOW_MONGO_URL"] = mongo_url

        if os.environ.get("RUNWARE_API_KEY") or os.environ.get("REELFLOW_RUNWARE_API_KEY"):
            say("  runware    the real Runware API (RUNWARE_API_KEY is set)")
        else:
            speedup = os.environ.get("RUNWARE_SIM_SPEEDUP", "10")
            sim = group.start(
                "runware-sim",
                [console_script("reelflow-runware-sim"), "--port", "0"],
                {"RUNWARE_SIM_SPEEDUP": speedup},
            )
            sim_url = wait_for_sim_url(sim)
            env |= {"REELFLOW_RUNWARE_BASE_URL": sim_url, "REELFLOW_RUNWARE_API_KEY": "sim-key"}
            # Simulated clips finish in seconds; check them at a matching pace.
            env.setdefault(
                "REELFLOW_POLL_INITIAL_DELAY_S",
                os.environ.get("REELFLOW_POLL_INITIAL_DELAY_S", "2"),
            )
            env.setdefault(
                "REELFLOW_POLL_MAX_DELAY_S", os.environ.get("REELFLOW_POLL_MAX_DELAY_S", "10")
            )
            say(f"  runware    simulator at {sim_url} (speedup {speedup}, RUNWARE_SIM_SPEEDUP)")

        database = os.environ.get("REELFLOW_MONGO_DATABASE", "reelflow")
        upgraded = asyncio.run(prepare_database(mongo_url, database))
        if upgraded:
            say(f"  mongodb    upgraded {upgraded} project documents to the current shape")
        dev_key = asyncio.run(ensure_dev_key(mongo_url, database))

        for name, port in SERVICES:
            child = group.start(
                name, [console_script(f"reelflow-{name}")], env | {"REELFLOW_HTTP_PORT": str(port)}
            )
            wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
            say(f"  {name:<10} http://127.0.0.1:{port}  (log: {child.log_path})")

        say()
        say("reelflow is running.")
        say("  Dashboard  http://127.0.0.1:8000/   (sign in with the key below)")
        say("  REST API   http://127.0.0.1:8000/v1/projects   (docs: http://127.0.0.1:8000/docs)")
        say("  WebSocket  ws://127.0.0.1:8001/v1/ws/projects/{project_id}?token=<key>")
        say(f"  dev key    {dev_key}")
        say("Press Ctrl-C to stop.")
        _wait_for_stop(group)
        say("reelflow: stopping")


def _wait_for_stop(group: ProcessGroup) -> None:
    stopping = False

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        dead = group.first_dead()
        if dead is not None:
            say(f"{dead.name} exited with code {dead.process.returncode}:\n{dead.log_tail()}")
            return
        time.sleep(0.5)  # a supervisor's idle loop


def run() -> None:
    try:
        main()
    except StartError as exc:
        sys.exit(f"reelflow: could not start: {exc}")


if __name__ == "__main__":
    run()
