"""RabbitMQ on this machine.

The local broker of ``make run`` and ``make test`` (started if installed but
stopped), and :class:`OwnNode`, a node of a run's own for runs that kill the
broker (``make chaos``), so the shared one is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from reelflow_common.openfiles import raise_open_files
from reelflow_devtools.ports import free_port
from reelflow_devtools.processes import Child, ProcessGroup, StartError, wait_stopped
from reelflow_devtools.waiting import poll_until

LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
_LOCAL_HOSTS = ("127.0.0.1", "localhost")
_START_DEADLINE_S = 90
#: open files a broker started here gets, when the hard limit allows that many
BROKER_OPEN_FILES = 65536
#: below this many, a broker of ours is warned about when started
_LOW_OPEN_FILES = 4096
#: what a local broker's file handle cache may grant at least (:func:`widen_file_handle_cache`)
BROKER_FILE_HANDLES = 16384


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def is_local(host: str | None) -> bool:
    """Whether a broker at ``host`` runs on this machine (no host: the default, local)."""
    return host is None or host in _LOCAL_HOSTS


def _server_command() -> str | None:
    found = shutil.which("rabbitmq-server")
    if found is None and Path("/usr/sbin/rabbitmq-server").exists():
        found = "/usr/sbin/rabbitmq-server"  # Debian's, outside a normal user's PATH
    return found


def _node_command() -> str:
    """The server script itself: Debian's ``/usr/sbin`` one is a wrapper that switches user."""
    for candidate in (Path("/usr/lib/rabbitmq/bin/rabbitmq-server"), _server_command()):
        if candidate is not None and Path(candidate).exists():
            return str(candidate)
    raise StartError("rabbitmq-server not found (Debian: sudo apt-get install rabbitmq-server)")


def ensure_rabbitmq(url: str) -> Literal["running", "started"]:
    """Make sure a broker listens where ``url`` points; start the local one if need be.

    Only a broker on this machine is started (``rabbitmq-server -detached``), and it
    is left running afterwards, as a system service would be, with as many open
    files as :func:`raise_open_files_for_broker` gets. Raises ``StartError``
    when the broker is not reachable and cannot be started.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if _reachable(host, port):
        if is_local(host):
            guard_dead_letter_supervisor()
            widen_file_handle_cache()
        return "running"
    server = _server_command()
    if not is_local(host) or server is None:
        raise StartError(
            f"RabbitMQ is not reachable at {host}:{port}.\n"
            "Install and start it (Debian: sudo apt-get install rabbitmq-server), "
            "or point REELFLOW_AMQP_URL at a running broker."
        )
    open_files = raise_open_files_for_broker()
    if open_files < _LOW_OPEN_FILES:
        print(
            f"warning: starting RabbitMQ with {open_files} open files at most: it stops "
            f"answering new connections once about {open_files // 3} quorum queues exist",
            file=sys.stderr,
        )
    subprocess.run([server, "-detached"], check=False)  # noqa: S603 (a fixed local path)
    poll_until(
        lambda: _reachable(host, port) or None,
        what=f"RabbitMQ to listen at {host}:{port} (see its log in /var/log/rabbitmq)",
        deadline_s=_START_DEADLINE_S,
        pause_s=0.5,
        error=StartError,
    )
    guard_dead_letter_supervisor()
    widen_file_handle_cache()
    return "started"


def raise_open_files_for_broker() -> int:
    """Raise this process's soft limit of open files, which a broker it starts inherits.

    RabbitMQ 3.10's file handle cache counts three handles per quorum queue
    against a limit of the node's open files less about a hundred, and grants
    these reservations even past it. Once they reach it, it grants nothing else:
    every new connection waits in its AMQP handshake, every classic queue's
    deletion and ``rabbitmqctl`` wait too, for good. At the common default of
    1,024 that took some 310 quorum queues (the shared broker's wedge of
    2026-12-02, docs/ARCHITECTURE.md); at :data:`BROKER_OPEN_FILES`, about
    21,800. Raised to that or to the hard limit, whichever is lower; the soft
    limit now in force is returned.
    """
    return raise_open_files(BROKER_OPEN_FILES)


#: Erlang, evaluated in the broker: a process that restarts ``rabbit_fifo_dlx_sup``
#: within a second of its going away. The evaluating process registers it before
#: letting it run, so of two installs at once exactly one keeps its guard.
_DLX_GUARD = """
Check = fun Loop() ->
  case whereis(rabbit_fifo_dlx_sup) of
    undefined -> catch supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup);
    _ -> ok
  end,
  timer:sleep(1000),
  Loop()
end,
Guard = spawn(fun() -> receive go -> Check() end end),
try register(reelflow_dlx_guard, Guard) of
  true -> Guard ! go, installed
catch
  error:badarg -> exit(Guard, kill), running
end.
"""
#: Erlang, evaluated in the broker: its file handle cache's limit, raised to at least ~p
_WIDEN_HANDLES = """
Limit = file_handle_cache:get_limit(),
case Limit < ~p of
  true -> file_handle_cache:set_limit(~p), widened;
  false -> kept
end.
"""


def widen_file_handle_cache(node: OwnNode | None = None) -> str:
    """Let a running local broker's file handle cache grant :data:`BROKER_FILE_HANDLES`.

    RabbitMQ 3.10 counts three handles per quorum queue against that cache's limit
    (the node's open files less about a hundred, when it booted), with no descriptor
    behind them, and once the count passes the limit it grants nothing else: every
    new connection waits in its AMQP handshake for good (docs/ARCHITECTURE.md, "Open
    files on RabbitMQ 3.10"). A broker started elsewhere with 1,024 open files got
    there at some 310 quorum queues, six topologies: a test run beside a benchmark.
    Its descriptors stay far below the limit (42 with that many queues), so the
    count is raised, live, without a restart. Best effort, as the guard above; what
    ``rabbitmqctl`` answered is returned (``widened`` or ``kept``).
    """
    wanted = str(BROKER_FILE_HANDLES)
    answer = rabbitmqctl_eval(_WIDEN_HANDLES.replace("~p", wanted), node)
    if answer not in ("widened", "kept"):
        print(f"warning: RabbitMQ's file handle limit not widened: {answer}", file=sys.stderr)
    return answer


#: what :func:`guard_dead_letter_supervisor` answers when the guard is in place
GUARDED = ("installed", "running")


def guard_dead_letter_supervisor(node: OwnNode | None = None) -> str:
    """Keep a local broker's dead-letter supervisor alive while tests churn its queues.

    RabbitMQ's ``rabbit_fifo_dlx_sup`` stops for good once its workers exit more
    than 100 times in a second (rabbitmq-server#16652, seen here on 3.10 and
    open upstream), as when a test's teardown deletes many at-least-once
    dead-lettering quorum queues at once. From then on declaring such a queue
    closes the connection (INTERNAL_ERROR), so no service gets ready.
    ``make test``, ``make run`` and ``make bench`` churn queues on the machine's
    broker (``node`` None), so they install this guard once per broker; it lives
    as long as the broker's Erlang node. Production topologies are declared once
    and not churned; their brokers are not touched. Best effort: without
    ``rabbitmqctl`` or its rights nothing is installed and a warning says so.
    Returns what ``rabbitmqctl`` answered (one of :data:`GUARDED` when in place).
    """
    answer = rabbitmqctl_eval(_DLX_GUARD, node)
    if answer not in GUARDED:
        print(f"warning: RabbitMQ's dead-letter guard not installed: {answer}", file=sys.stderr)
    return answer


def rabbitmqctl_eval(expression: str, node: OwnNode | None = None) -> str:
    """``rabbitmqctl eval`` on the machine's broker or on ``node``; its answer or why none."""
    if node is None:
        ctl = shutil.which("rabbitmqctl") or _existing("/usr/sbin/rabbitmqctl")
        argv = [ctl] if ctl else []
    else:
        # The CLI itself, not Debian's wrapper (which runs it as the rabbitmq user):
        # a node of a run's own belongs to whoever started it.
        ctl = _existing("/usr/lib/rabbitmq/bin/rabbitmqctl") or shutil.which("rabbitmqctl")
        argv = [ctl, "-n", node.node_name, "--erlang-cookie", node.cookie()] if ctl else []
    if not argv:
        return "no rabbitmqctl"
    try:
        done = subprocess.run(  # noqa: S603 (a fixed local command)
            [*argv, "eval", expression],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl failed: {exc}"
    return done.stdout.strip() or done.stderr.strip()


def _existing(path: str) -> str | None:
    return path if Path(path).exists() else None


class OwnNode:
    """A RabbitMQ node of one run: its own node name, ports and directories, no plugins.

    It reads none of the machine's RabbitMQ configuration (``/etc/rabbitmq``
    would make it listen on the shared broker's port) and keeps its Erlang
    cookie in its own ``home``. It runs in the foreground as a child of
    ``group``, so it can be killed with SIGKILL, as a crashed machine would, and
    started again on the same ports and data.
    """

    def __init__(self, group: ProcessGroup, base_dir: Path, *, name: str) -> None:
        self.group = group
        self.base_dir = base_dir.resolve()
        self.node_name = f"{name}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def cookie(self) -> str:
        """The node's Erlang cookie (written by the node at its first start)."""
        return (self.base_dir / "home" / ".erlang.cookie").read_text().strip()

    def _environment(self) -> dict[str, str]:
        base = self.base_dir
        for folder in ("home", "mnesia", "log"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        config = base / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\nloopback_users = none\n")
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")  # management and every other plugin off
        env_file = base / "rabbitmq-env.conf"
        env_file.write_text("")
        return {
            "HOME": str(base / "home"),  # the Erlang cookie
            # exec the VM in place of the script, keeping -noinput: SIGKILL reaches the node
            "RUNNING_UNDER_SYSTEMD": "1",
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    def start(self, *, deadline_s: float = _START_DEADLINE_S) -> None:
        """Start the node (again) and wait until it takes connections."""
        self.spawn()
        self.wait_listening(deadline_s=deadline_s)

    def spawn(self) -> None:
        """Start the node (again), without waiting for it."""
        argv = [_node_command()]
        env = self._environment()
        if self.child is None:
            self.child = self.group.start("rabbitmq", argv, env)
        else:
            self.child = self.group.restart(self.child, argv, env)

    def wait_listening(self, *, deadline_s: float = _START_DEADLINE_S) -> None:
        """Until the node takes connections; StartError if it exits or the deadline passes."""
        assert self.child is not None, "spawn() first"
        poll_until(
            lambda: _reachable("127.0.0.1", self.amqp_port) or None,
            what=f"the RabbitMQ node to listen on port {self.amqp_port}",
            deadline_s=deadline_s,
            pause_s=0.2,
            error=StartError,
            child=self.child,
        )

    def kill_hard(self) -> None:
        """SIGKILL to the node and its helpers (its whole process group)."""
        if self.child is not None and self.child.alive():
            os.killpg(self.child.process.pid, signal.SIGKILL)
            self.child.process.wait()

    def stop(self, timeout_s: float = 30) -> None:
        if self.child is not None:
            self.child.terminate()
            wait_stopped([self.child], timeout_s=timeout_s)
