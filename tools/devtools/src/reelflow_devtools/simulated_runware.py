"""What ``make run`` sets when the Runware simulator stands in for Runware."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: in the run directory: the simulator's tasks and port, kept across runs as Runware keeps them
SIMULATOR_STATE_FILE = "runware-sim-state.json"
#: simulated clips finish in seconds: check them at a matching pace unless told otherwise
SIMULATOR_POLLING = {"REELFLOW_POLL_INITIAL_DELAY_S": "2", "REELFLOW_POLL_MAX_DELAY_S": "10"}


def simulator_state_file(run_dir: Path) -> Path:
    """Where the simulator of the stack in ``run_dir`` keeps its state."""
    return run_dir.resolve() / SIMULATOR_STATE_FILE


def simulator_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The services' settings for the simulator, unless ``env`` gives its own."""
    return {name: env.get(name, value) for name, value in SIMULATOR_POLLING.items()}
