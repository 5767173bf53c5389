"""What ``make run`` sets when the Runware simulator stands in for Runware."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reelflow_runware_sim.models import MODELS

#: in the run directory: the simulator's tasks and port, kept across runs as Runware keeps them
SIMULATOR_STATE_FILE = "runware-sim-state.json"
#: simulated clips finish in seconds: check them at a matching pace unless told otherwise
SIMULATOR_POLLING = {"REELFLOW_POLL_INITIAL_DELAY_S": "2", "REELFLOW_POLL_MAX_DELAY_S": "10"}
_COST_FALLBACK = "REELFLOW_COST_FALLBACK_USD_PER_S"


def simulator_state_file(run_dir: Path) -> Path:
    """Where the simulator of the stack in ``run_dir`` keeps its state."""
    return run_dir.resolve() / SIMULATOR_STATE_FILE


def simulator_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The services' settings for the simulator, unless ``env`` gives its own.

    Budgets estimate a model never seen at the cost fallback: here the simulator's dearest
    price per second (at the api's default size, without audio), so that no model's first
    clips spend past a budget; it was the default model's price, and a tenant's first
    project on a dearer one bought $5.60 of clips on a $2 budget. A model seen is estimated
    at its own price from then on.
    """
    settings = {name: env.get(name, value) for name, value in SIMULATOR_POLLING.items()}
    dearest = max(spec.cost_per_second for spec in MODELS.values())
    settings[_COST_FALLBACK] = env.get(_COST_FALLBACK, f"{dearest:g}")
    return settings
