"""What ``make run`` sets when the Runware simulator stands in for Runware."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reelflow_api.settings import Settings as ApiSettings
from reelflow_runware_sim.models import MODELS

#: in the run directory: the simulator's tasks and port, kept across runs as Runware keeps them
SIMULATOR_STATE_FILE = "runware-sim-state.json"
#: simulated clips finish in seconds: check them at a matching pace unless told otherwise
SIMULATOR_POLLING = {"REELFLOW_POLL_INITIAL_DELAY_S": "2", "REELFLOW_POLL_MAX_DELAY_S": "10"}
_COST_FALLBACK = "REELFLOW_COST_FALLBACK_USD_PER_S"
_DEFAULT_MODEL = "REELFLOW_DEFAULT_MODEL"


def simulator_state_file(run_dir: Path) -> Path:
    """Where the simulator of the stack in ``run_dir`` keeps its state."""
    return run_dir.resolve() / SIMULATOR_STATE_FILE


def simulator_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The services' settings for the simulator, unless ``env`` gives its own.

    Budgets estimate a model never seen at the cost fallback; production's ($0.5/s)
    would make the first project cost five times what the simulator charges for the
    default model, so it is the simulator's price of that model here.
    """
    settings = {name: env.get(name, value) for name, value in SIMULATOR_POLLING.items()}
    model = env.get(_DEFAULT_MODEL, ApiSettings.model_fields["default_model"].default)
    spec = MODELS.get(model)
    if spec is not None:
        settings[_COST_FALLBACK] = env.get(_COST_FALLBACK, f"{spec.cost_per_second:g}")
    elif _COST_FALLBACK in env:
        settings[_COST_FALLBACK] = env[_COST_FALLBACK]
    return settings
