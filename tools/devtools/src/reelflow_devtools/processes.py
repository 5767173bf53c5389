"""Start reelflow's services as child processes, wait until they answer, stop them cleanly.

Shared by ``make run`` and the end-to-end tests, so both run the services the
way an operator does: as separate processes, configured only by environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SIM_URL_PATTERN = re.compile(r"listening on (http://\S+)")


class StartError(RuntimeError):
    """A child process did not become healthy."""


def console_script(name: str) -> str:
    """The path of one of our console scripts, beside the running Python."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> None:
        """SIGKILL: what a crashed node or the OOM killer does."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout_s: float = 25) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """Children started in order and stopped in reverse."""

    log_dir: Path | None = None
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
        with open(log_path or os.devnull, "ab") as out:  # the child keeps its own copy
            process = subprocess.Popen(  # noqa: S603 (our own console scripts)
                argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def restart(self, child: Child, argv: list[str], env: dict[str, str]) -> Child:
        self.children.remove(child)
        return self.start(child.name, argv, env)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def first_dead(self) -> Child | None:
        return next((child for child in self.children if not child.alive()), None)


def wait_healthy(child: Child, url: str, *, deadline_s: float = 60) -> None:
    """Poll ``url`` until it answers 200, the child dies, or the deadline passes."""
    stop_at = time.monotonic() + deadline_s
    while time.monotonic() < stop_at:
        if not child.alive():
            raise StartError(
                f"{child.name} exited ({child.process.returncode}):\n{child.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a starting process; bounded by the deadline
    raise StartError(
        f"{child.name} not healthy at {url} within {deadline_s:.0f} s:\n{child.log_tail()}"
    )


def wait_for_sim_url(child: Child, *, deadline_s: float = 30) -> str:
    """The simulator prints its URL once it listens; read it from its log."""
    stop_at = time.monotonic() + deadline_s
    while time.monotonic() < stop_at:
        if child.log_path and child.log_path.exists():
            found = SIM_URL_PATTERN.search(child.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
        if not child.alive():
            raise StartError(f"simulator exited:\n{child.log_tail()}")
        time.sleep(0.05)  # waiting for a line in a file; bounded by the deadline
    raise StartError("the simulator did not print its URL")
