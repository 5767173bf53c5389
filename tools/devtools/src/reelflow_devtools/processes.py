"""Child processes of a launcher: started, waited for with deadlines, stopped cleanly.

Every child runs in a process group of its own, so a terminal's Ctrl-C reaches
only the launcher, which then stops the children in order (the services while
their database is still up, the database last). On Linux a child also gets
SIGTERM when the launcher dies without stopping it, so no orphan keeps a port.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from reelflow_devtools.waiting import poll_until

SIM_URL_PATTERN = re.compile(r"listening on (http://\S+)")
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A child process did not become healthy."""


class Occupied(StartError):
    """What a stack needs is another's: its run directory, a port, its queues' prefix."""


def console_script(name: str) -> str:
    """The path of one of our console scripts, beside the running Python."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send SIGTERM to the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, called after

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def spawn(
    argv: list[str], *, env: Mapping[str, str] | None = None, output: IO[bytes] | int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a process group of its own, tied to this process's life.

    ``env`` is added to this process's environment; ``output`` takes stdout and stderr.
    The parent-death signal follows the thread that starts the child: start children
    from the thread that lives as long as they should (the main thread, here).
    """
    return subprocess.Popen(  # noqa: S603 (our own console scripts and dev servers)
        argv,
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
        preexec_fn=_parent_death_signal(),  # only prctl between fork and exec
    )


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    #: where this child's own output begins in ``log_path`` (a restart appends)
    log_offset: int = 0
    _terminated: bool = field(default=False, init=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> None:
        """SIGKILL: what a crashed node or the OOM killer does."""
        self.process.kill()
        self.process.wait()

    def terminate(self) -> None:
        """SIGTERM, once: a second one makes some servers skip their graceful stop."""
        if self.alive() and not self._terminated:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = 25) -> None:
        stop_children([self], timeout_s=timeout_s)

    def output(self) -> str:
        """What this child has printed so far (never an earlier child's lines)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def stop_children(children: Iterable[Child], *, timeout_s: float) -> None:
    """SIGTERM to every child at once, then wait for all; SIGKILL whoever outlasts the bound."""
    children = list(children)
    for child in children:
        child.terminate()
    wait_stopped(children, timeout_s=timeout_s)


def wait_stopped(children: Iterable[Child], *, timeout_s: float) -> None:
    """Wait for children already told to stop; SIGKILL whoever outlasts ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill_hard()


#: in a log directory: each process's log of the run before (moved there when it starts again)
PREVIOUS_LOGS = "previous"


@dataclass
class ProcessGroup:
    """Children started in order; each run's logs start empty, the run before's moved to
    ``previous/`` (a crashed run's logs outlive the next start)."""

    log_dir: Path | None = None
    children: list[Child] = field(default_factory=list)
    _logged: set[str] = field(default_factory=set)

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Child:
        log_path = None
        offset = 0
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            if name not in self._logged:  # the first start in this run: a fresh file
                if log_path.exists():
                    previous = self.log_dir / PREVIOUS_LOGS
                    previous.mkdir(exist_ok=True)
                    log_path.replace(previous / log_path.name)
                log_path.write_bytes(b"")
                self._logged.add(name)
            offset = log_path.stat().st_size
        with open(log_path or os.devnull, "ab") as out:  # the child keeps its own copy
            process = spawn(argv, env=env, output=out)
        child = Child(name, process, log_path, offset)
        self.children.append(child)
        return child

    def restart(self, child: Child, argv: list[str], env: Mapping[str, str]) -> Child:
        self.children.remove(child)
        return self.start(child.name, argv, env)

    def stop_all(self, timeout_s: float = 25) -> None:
        """Every child, last started first, each within ``timeout_s``."""
        for child in reversed(self.children):
            child.stop(timeout_s)
        self.children.clear()

    def first_dead(self) -> Child | None:
        return next((child for child in self.children if not child.alive()), None)


def wait_healthy(child: Child, url: str, *, deadline_s: float = 60) -> None:
    """Poll ``url`` until it answers 200, the child dies, or the deadline passes.

    A 200 while the child is dead is not it answering (another process on its port):
    that is a :class:`StartError`, as is the deadline.
    """
    _wait_answer(child, url, lambda answer: answer.status_code == 200, "200", deadline_s)


def wait_ready(child: Child, url: str, *, deadline_s: float = 60) -> None:
    """Poll a service's ``/readyz`` at ``url`` until every check is true (``"status": "ok"``).

    Not only a 200: the api and the notifier answer a 200 ``degraded`` while RabbitMQ
    is down after their first link (they serve without it), and what comes next (a
    benchmark's or a test's first project) needs their publishes and their live events.
    Else as :func:`wait_healthy`.
    """

    def every_check(answer: httpx.Response) -> bool:
        return answer.status_code == 200 and answer.json().get("status") == "ok"

    _wait_answer(child, url, every_check, "every check true", deadline_s)


def _wait_answer(
    child: Child,
    url: str,
    accepts: Callable[[httpx.Response], bool],
    what: str,
    deadline_s: float,
) -> None:
    def answered() -> bool | None:
        try:
            return accepts(httpx.get(url, timeout=1)) or None
        except (httpx.HTTPError, ValueError):  # ValueError: a body that is not JSON
            return None

    poll_until(
        answered,
        what=f"{child.name} to answer {what} at {url}",
        deadline_s=deadline_s,
        pause_s=0.1,
        error=StartError,
        child=child,
    )


def wait_for_sim_url(child: Child, *, deadline_s: float = 30) -> str:
    """The URL this simulator printed once it listened (read from its own output only)."""

    def printed() -> str | None:
        found = SIM_URL_PATTERN.search(child.output())
        return found.group(1) if found else None

    return poll_until(
        printed,
        what="the simulator to print its URL",
        deadline_s=deadline_s,
        pause_s=0.05,
        error=StartError,
        child=child,
    )
