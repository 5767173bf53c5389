"""The local RabbitMQ for ``make run`` and ``make test``: started if installed but stopped."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from reelflow_devtools.processes import StartError

LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
_LOCAL_HOSTS = ("127.0.0.1", "localhost")
_START_DEADLINE_S = 90


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _server_command() -> str | None:
    found = shutil.which("rabbitmq-server")
    if found is None and Path("/usr/sbin/rabbitmq-server").exists():
        found = "/usr/sbin/rabbitmq-server"  # Debian's, outside a normal user's PATH
    return found


def ensure_rabbitmq(url: str) -> Literal["running", "started"]:
    """Make sure a broker listens where ``url`` points; start the local one if need be.

    Only a broker on this machine is started (``rabbitmq-server -detached``), and it
    is left running afterwards, as a system service would be. Raises ``StartError``
    when the broker is not reachable and cannot be started.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if _reachable(host, port):
        return "running"
    server = _server_command()
    if host not in _LOCAL_HOSTS or server is None:
        raise StartError(
            f"RabbitMQ is not reachable at {host}:{port}.\n"
            "Install and start it (Debian: sudo apt-get install rabbitmq-server), "
            "or point REELFLOW_AMQP_URL at a running broker."
        )
    subprocess.run([server, "-detached"], check=False)  # noqa: S603 (a fixed local path)
    deadline = time.monotonic() + _START_DEADLINE_S
    while not _reachable(host, port):
        if time.monotonic() > deadline:
            raise StartError(
                f"RabbitMQ did not start within {_START_DEADLINE_S} s; "
                "see its log in /var/log/rabbitmq."
            )
        time.sleep(0.5)  # waiting for the broker to listen; bounded by the deadline
    return "started"
