"""What ``make run`` checks before it starts a stack: its ports are free, it holds its queue
prefix's lock and nothing else consumes that prefix's queues; each refusal is
:class:`Occupied`. And, for a refusal, how to start the stack beside the one in the way.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from aio_pika.exceptions import AMQPError

from reelflow_devtools.launcher import StackConfig
from reelflow_devtools.prefixes import (
    InUse,
    PrefixLock,
    free_prefix,
    in_use,
    prefix_consumers,
    refusal,
)
from reelflow_devtools.processes import Occupied, StartError
from reelflow_devtools.rundir import RUN_DIR, holder


def beside(
    config: StackConfig,
    *,
    checkout: Path | None = None,
    in_use_of: Callable[[str, str], InUse] = in_use,
) -> str:
    """How to start a stack beside the one ``config`` describes: a queue prefix named after
    the checkout (``checkout``, the current directory) that no running stack uses (holds
    or consumes from), and a run directory of that name no launcher holds."""

    def taken(prefix: str) -> bool:
        run_dir = _run_dir_for(prefix)
        if prefix == config.amqp_prefix or run_dir.resolve() == config.run_dir.resolve():
            return True
        if holder(run_dir) is not None:
            return True
        try:
            return bool(in_use_of(config.amqp_url, prefix))
        except (OSError, TimeoutError, AMQPError):
            return False  # the broker does not answer: the hint goes unchecked

    prefix = free_prefix((checkout or Path()).resolve(), taken)
    run_args = f"--run-dir {_run_dir_for(prefix)} --free-ports"
    return f'REELFLOW_AMQP_PREFIX={prefix} make run RUN_ARGS="{run_args}"'


def _run_dir_for(prefix: str) -> Path:
    return RUN_DIR / prefix.rstrip(".")


def lock_prefix(config: StackConfig) -> PrefixLock:
    """This stack's prefix lock (:class:`PrefixLock`), to hold until the stack has stopped:
    :class:`Occupied` while another launcher holds it (its stack runs, or is starting)."""
    prefix = config.amqp_prefix

    def lost(why: BaseException | None) -> None:
        print(
            f"reelflow: the lock on REELFLOW_AMQP_PREFIX={prefix!r} is gone with its"
            f" connection to RabbitMQ ({why!r}): another make run on it is not refused now",
            flush=True,
        )

    lock = PrefixLock(config.amqp_url, prefix, on_lost=lost)
    try:
        taken = lock.acquire()
    except (OSError, TimeoutError, AMQPError) as exc:
        raise StartError(f"RabbitMQ did not give this stack its queues' lock: {exc!r}") from exc
    if not taken:
        raise Occupied(refusal(prefix, config.amqp_url, InUse(locked=True)))
    return lock


def check_prefix(config: StackConfig) -> None:
    """Refuse to start (:class:`Occupied`) when another stack consumes this prefix's queues
    (one no launcher started: a launcher's holds the lock, :func:`lock_prefix`)."""
    try:
        used = asyncio.run(prefix_consumers(config.amqp_url, config.amqp_prefix))
    except (OSError, TimeoutError, AMQPError) as exc:
        raise StartError(f"RabbitMQ did not say who consumes this stack's queues: {exc!r}") from exc
    if used:
        raise Occupied(refusal(config.amqp_prefix, config.amqp_url, InUse(consumers=used)))


def check_ports(config: StackConfig) -> None:
    """Refuse to start (:class:`Occupied`) when a service's port is taken, saying which.

    Before anything starts: the service would otherwise exit only once the rest had
    started, with the reason deep in its log.
    """
    if config.ports is None:
        return
    host = config.http_host or "0.0.0.0"  # the services' own default
    taken = []
    for name, port in config.ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As uvicorn binds: a port whose last connection is in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                taken.append(f"port {port} ({name}): {exc.strerror or exc}")
    if taken:
        raise Occupied(
            f"cannot listen on {host}: {'; '.join(taken)}. Another reelflow? Stop what"
            " listens there"
        )
