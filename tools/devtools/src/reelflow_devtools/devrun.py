"""``make run``: reelflow on one machine, on embedded defaults.

RabbitMQ from ``REELFLOW_AMQP_URL`` (default: the local broker, started if it is
installed but stopped); MongoDB from ``REELFLOW_MONGO_URL``, or else the embedded
SecantusDB with its data in ``.run/mongo-data``; the Runware simulator when no
``RUNWARE_API_KEY`` is set (its tasks kept in ``.run/runware-sim-state.json``
across runs); then the four services. Ctrl-C stops everything:
the services first (each drains what it is doing), the database last.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from reelflow_common.settings import TopologySettings
from reelflow_devtools.cleanup import (
    TOPOLOGY_FILE,
    delete_unused,
    record_topology,
    recorded_beside,
    recorded_topology,
)
from reelflow_devtools.kept_ports import PORTS_FILE, kept_ports
from reelflow_devtools.launcher import (
    DEFAULT_PORTS,
    DRAIN_TIMEOUT_S,
    SERVICES,
    Simulator,
    Stack,
    StackConfig,
)
from reelflow_devtools.processes import Occupied, StartError, console_script
from reelflow_devtools.rabbitmq import LOCAL_AMQP_URL, ensure_rabbitmq
from reelflow_devtools.rundir import RUN_DIR, claim_run_dir
from reelflow_devtools.runfiles import ENV_FILE, admin_environment, video_storage, write_env_file
from reelflow_devtools.simulated_runware import simulator_settings, simulator_state_file
from reelflow_devtools.startchecks import beside, check_ports, check_prefix, lock_prefix

#: how the banner says to authenticate a WebSocket: docs/API.md's preferred ways, no
#: ``?token=`` (legacy: proxies may log URLs)
WS_AUTH = "key in Authorization: Bearer, or ?ticket= from POST /v1/ws-tickets"
#: where the reelflow CLI looks for the API unless REELFLOW_URL says otherwise (its
#: reelflow_cli.config.DEFAULT_URL: devtools does not depend on the CLI; a test checks them)
CLI_DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORTS['api']}"
#: said once the stack runs and a Ctrl-C stops it
READY = "Press Ctrl-C to stop."


def say(line: str = "") -> None:
    print(line, flush=True)


def _announce(what: str, detail: str) -> None:
    say(f"  {what:<10} {detail}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reelflow-dev", description=__doc__)
    parser.add_argument(
        "--run-dir", type=Path, default=RUN_DIR, help="logs and the embedded database's data"
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help=f"free ports instead of {min(DEFAULT_PORTS.values())}-{max(DEFAULT_PORTS.values())};"
        f" the first run's, kept in the run directory ({PORTS_FILE}), while they are free",
    )
    parser.add_argument(
        "--delete-queues",
        action="store_true",
        help="start nothing: delete the queues and exchanges the stacks of the run directory"
        " (and of the run directories inside it) declared, unless one of them runs or a queue"
        " has consumers (then none: exit 1); a broker that does not answer keeps them (exit 0)."
        " make clean runs this first",
    )
    parser.add_argument(
        "--prefix",
        help="with --delete-queues: those make run would declare on this REELFLOW_AMQP_PREFIX"
        " instead",
    )
    args = parser.parse_args(argv)
    if args.prefix is not None and not args.delete_queues:
        parser.error("--prefix goes with --delete-queues")
    return args


def config_from_environment(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ
) -> StackConfig:
    """The stack ``make run`` starts, as the environment and the options describe it."""
    config = _config_without_storage(args, env)
    return replace(config, settings=video_storage(args.run_dir, env) | dict(config.settings))


def topology_from_environment(
    args: argparse.Namespace, prefix: str | None = None, env: Mapping[str, str] = os.environ
) -> TopologySettings:
    """The topology ``make run`` would declare, as the environment and the options describe
    it (on ``prefix``, when given); nothing is written (a run's secret, say)."""
    config = _config_without_storage(args, env)
    if prefix is not None:
        config = replace(config, amqp_prefix=prefix)
    return Stack(config).topology_settings()


def _config_without_storage(args: argparse.Namespace, env: Mapping[str, str]) -> StackConfig:
    real_runware = bool(env.get("RUNWARE_API_KEY") or env.get("REELFLOW_RUNWARE_API_KEY"))
    simulator = None
    if not real_runware:
        simulator = Simulator(
            float(env.get("RUNWARE_SIM_SPEEDUP", "10")),
            state_file=simulator_state_file(args.run_dir),
        )
    settings = {} if simulator is None else simulator_settings(env)
    return StackConfig(
        run_dir=args.run_dir,
        amqp_url=env.get("REELFLOW_AMQP_URL", LOCAL_AMQP_URL),
        amqp_prefix=env.get("REELFLOW_AMQP_PREFIX", ""),
        mongo_url=env.get("REELFLOW_MONGO_URL") or None,
        database=env.get("REELFLOW_MONGO_DATABASE", "reelflow"),
        simulator=simulator,
        ports=None if args.free_ports else DEFAULT_PORTS,
        settings=settings,
        log_format=env.get("REELFLOW_LOG_FORMAT", "json"),
        wait_linked=False,
        drain_timeout_s=float(env.get("REELFLOW_DRAIN_TIMEOUT_S") or DRAIN_TIMEOUT_S),
        # The development stack issues its own key: loopback only unless asked otherwise.
        http_host=env.get("REELFLOW_HTTP_HOST", "127.0.0.1"),
    )


@dataclass(frozen=True)
class Stopped:
    """How a stack that ran ended: by a signal (``asked``) or a child's death, seen at
    ``since`` (``time.monotonic()``)."""

    asked: bool
    since: float


def main(argv: list[str] | None = None) -> int:
    """Start, wait for Ctrl-C, stop: 0, or 1 when a process died on its own."""
    args = parse_args(argv)
    if args.delete_queues:
        # A broker that does not answer is said in one line (cleanup.left_behind), not in
        # aiormq's logged connect error besides.
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        return delete_queues(args)
    config = config_from_environment(args)
    try:
        pid_file = claim_run_dir(args.run_dir)
        try:
            stopped = _run(config)
        finally:
            pid_file.unlink(missing_ok=True)
    except Occupied as exc:
        raise StartError(f"{exc}, or start this one beside it: {beside(config)}") from exc
    # Said last, once the prefix's lock and the run directory are given back too: all that
    # is left is this interpreter's exit (make's, under make run), about 0.1-0.3 s.
    cause = "Ctrl-C" if stopped.asked else "the exit"
    say(f"reelflow: stopped in {time.monotonic() - stopped.since:.1f} s ({cause} to the end)")
    return 0 if stopped.asked else 1


def delete_queues(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """``--delete-queues``: 1 when a topology asked for is refused (in use) or the broker
    refuses an operation, else 0 (said what was deleted, or left on a broker that does not
    answer, or that nothing was recorded).

    Without ``--prefix`` only what the run directory recorded is deleted: no record (a
    stack that never ran from it, or ran only from the run directories inside it) is no
    guess at the default prefix, whose queues are any checkout's."""
    if args.prefix is not None:
        topologies = [topology_from_environment(args, args.prefix, env)]
    else:
        own = recorded_topology(args.run_dir)
        topologies = [*([] if own is None else [own]), *recorded_beside(args.run_dir)]
        if not topologies:
            say(
                f"reelflow: no stack recorded its queues in {args.run_dir} (no {TOPOLOGY_FILE}"
                " in it or in the run directories inside it): no queues deleted"
            )
            return 0
    # Connected to as it is: make clean neither starts nor configures a broker.
    return delete_unused(env.get("REELFLOW_AMQP_URL", LOCAL_AMQP_URL), topologies, say)


def with_kept_ports(config: StackConfig) -> StackConfig:
    """``config`` with the ports its run directory keeps (:func:`kept_ports`), when it is to
    listen on free ones, saying which had to move; else ``config`` itself."""
    if config.ports is not None:
        return config
    ports, moved = kept_ports(config.run_dir, SERVICES)
    for move in moved:
        say(
            f"reelflow: port {move.was} ({move.service}) is taken: it listens on {move.now}"
            f" from now on (kept in {config.run_dir / PORTS_FILE})"
        )
    return replace(config, ports=ports)


def _run(config: StackConfig) -> Stopped:
    config = with_kept_ports(config)
    check_ports(config)
    say("reelflow: starting")
    state = ensure_rabbitmq(config.amqp_url)
    broker = urlsplit(config.amqp_url)
    _announce("rabbitmq", f"{broker.hostname}:{broker.port or 5672} ({state})")
    lock = lock_prefix(config)  # a second make run on this prefix is refused until it stops
    try:
        check_prefix(config)  # before anything of this stack consumes from its queues
        return _run_stack(config)
    finally:
        lock.release()  # once the stack has stopped


def _run_stack(config: StackConfig) -> Stopped:
    stack = Stack(config)
    # Before anything is declared: make clean deletes what is recorded (cleanup).
    record_topology(config.run_dir, stack.topology_settings())
    stack.start(_announce)
    env_file = config.run_dir / ENV_FILE
    try:
        write_env_file(env_file, admin_environment(stack.service_env(), os.environ))
        dev_key = asyncio.run(stack.ensure_dev_key(os.environ.get("REELFLOW_DEV_API_KEY")))
        admin = os.path.relpath(console_script("reelflow-admin"))
        say()
        for line in running_summary(stack, dev_key=dev_key, admin=admin, env_file=env_file):
            say(line)
        asked, since = _wait_for_stop(stack, ready=READY)
        say("reelflow: stopping")
    finally:
        env_file.unlink(missing_ok=True)  # its URLs and ports end with this stack
        stack.stop()  # returns once its last process has exited
    return Stopped(asked, since)


def running_summary(stack: Stack, *, dev_key: str, admin: str, env_file: Path) -> list[str]:
    """What ``make run`` prints once its stack runs: where each thing is, the key, and, when
    the api is not where the CLI looks by default (``--free-ports``), how to point it there."""
    api, notifier = stack.api_url, stack.ws_url
    lines = [
        "reelflow is running.",
        f"  Dashboard  {api}/   (sign in with the key below)",
        f"  REST API   {api}/v1/projects   (docs: {api}/docs)",
        f"  WebSocket  {notifier}/v1/ws/projects/{{project_id}}   ({WS_AUTH})",
        f"  dev key    {dev_key}",
        f"  admin      {admin} --env-file {env_file} --help",
    ]
    if api != CLI_DEFAULT_URL:
        lines.append(
            f"  CLI        export REELFLOW_URL={api}   (the reelflow CLI looks at port"
            f" {DEFAULT_PORTS['api']} otherwise)"
        )
    return lines


def _wait_for_stop(stack: Stack, *, ready: str) -> tuple[bool, float]:
    """Until SIGINT or SIGTERM (True), or until a child dies (False, saying which and why);
    with when (``time.monotonic()``) the signal came or the death was seen. ``ready`` is
    said once the signals are handled: a Ctrl-C right after it is a stop, not an interrupt."""
    stopping = False
    since = 0.0

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping, since
        if not stopping:
            since = time.monotonic()
        stopping = True
        # A second Ctrl-C interrupts the stop; the children still get SIGTERM when
        # this process exits (processes.spawn).
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    say(ready)
    while not stopping:
        dead = stack.first_dead()
        if dead is not None:
            seen = time.monotonic()
            say(f"{dead.name} {_ended(dead.process.returncode)}:\n{dead.log_tail()}")
            return False, seen
        time.sleep(0.2)  # a supervisor's idle loop
    return True, since


def _ended(code: int | None) -> str:
    """How a child ended, by its exit code (negative: the signal that killed it)."""
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name} (exit code {code})"
    return f"exited with code {code}"


def run() -> None:
    try:
        sys.exit(main(sys.argv[1:]))
    except StartError as exc:
        sys.exit(f"reelflow: could not start: {exc}")
    except KeyboardInterrupt:  # Ctrl-C while starting: what had started is stopped
        sys.exit(130)


if __name__ == "__main__":
    run()
