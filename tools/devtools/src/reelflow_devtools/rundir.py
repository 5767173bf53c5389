"""A run directory belongs to one launcher at a time: its pid file says which."""

from __future__ import annotations

import os
from pathlib import Path

from reelflow_devtools.processes import Occupied

#: make run's run directory (``--run-dir``), with those of the stacks beside it inside
RUN_DIR = Path(".run")
#: in the run directory while a launcher runs from it: its pid
PID_FILE = "reelflow-dev.pid"
_MODULE = b"reelflow_devtools.devrun"


def claim_run_dir(run_dir: Path) -> Path:
    """Mark ``run_dir`` as this launcher's (``reelflow-dev.pid``); its path, to remove at stop.

    A second ``make run`` on the same directory would fight the first over its
    database files and ports: it stops here with :class:`Occupied` saying so.
    """
    pid_file = run_dir / PID_FILE
    other = holder(run_dir)
    if other is not None and other != os.getpid():
        raise Occupied(
            f"reelflow is already running from {run_dir} (process {other}, in {pid_file}):"
            " stop it with Ctrl-C in its terminal"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    return pid_file


def holder(run_dir: Path) -> int | None:
    """The running launcher whose pid ``run_dir`` holds, if any."""
    try:
        pid = int((run_dir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_launcher(pid) else None


def _is_launcher(pid: int) -> bool:
    """Whether ``pid`` is a running ``reelflow-dev`` (on Linux, not a process that took over
    the pid of one that ended)."""
    if Path("/proc").is_dir():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # The console script (``.venv/bin/reelflow-dev``), or ``python -m`` of its module.
        return any(
            arg.endswith(b"/reelflow-dev") or arg in (b"reelflow-dev", _MODULE) for arg in argv
        )
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
