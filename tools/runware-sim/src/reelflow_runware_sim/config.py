"""Simulator settings.

`SimConfig` holds values only, so tests build it from arguments; `SimSettings` is the
same model read from `RUNWARE_SIM_*` environment variables, for the console script.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


def _split_commas(value: Any) -> Any:
    """Let list settings be written `a,b,c` in the environment instead of JSON."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SimConfig(BaseModel):
    """How the simulator listens, how fast simulated time runs and which faults it injects."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535, description="0 picks a free port")
    public_url: str | None = Field(
        default=None, description="base of every videoURL; defaults to the listening URL"
    )
    speedup: float = Field(default=1.0, gt=0, description="simulated seconds per real second")
    seed: int | None = Field(default=None, description="fixes every random draw")
    api_keys: Annotated[list[str], NoDecode] = ["sim-key"]

    # Faults, each a probability in [0, 1]. HTTP faults hit a whole `POST /v1` request.
    rate_429: Rate = 0.0
    rate_503: Rate = 0.0
    rate_504: Rate = 0.0
    task_error_rate: Rate = Field(default=0.0, description="accepted tasks that end in error")
    task_error_code: str = "timeoutProvider"
    hang_rate: Rate = Field(default=0.0, description="accepted tasks that never finish")
    drop_rate: Rate = Field(
        default=0.0, description="accepted submits whose answer is lost (connection cut)"
    )
    failure_shape: Literal["errors", "data"] = Field(
        default="errors",
        description="errors: failed item in top-level errors[]; data: status=error item in data[]",
    )
    video_url_ttl: float | None = Field(
        default=None,
        gt=0,
        description=(
            "simulated seconds a videoURL serves after its video succeeded (Runware's `ttl`);"
            " then 404. Unset: for ever"
        ),
    )
    # Guess: the docs do not say how Runware answers a getResponse for an unknown task.
    unknown_task_status: int = 400

    # Webhooks: delays before each retry, in simulated seconds (divided by speedup).
    webhook_retry_delays: Annotated[list[float], NoDecode] = [1.0, 2.0, 4.0, 8.0, 16.0]
    webhook_timeout: float = Field(default=10.0, gt=0, description="real seconds per attempt")
    webhook_drop_rate: Rate = 0.0
    webhook_duplicate_rate: Rate = 0.0

    # Kept across restarts, as Runware keeps running what it accepted while a client is down.
    state_file: Path | None = Field(
        default=None,
        description=(
            "where tasks are kept across restarts: read at start, written at stop and every"
            " state_save_interval s while anything changes. Unset: memory only"
        ),
    )
    state_save_interval: float = Field(
        default=30.0, gt=0, description="real seconds between saves of state_file"
    )

    log_level: str = "warning"

    @field_validator("api_keys", "webhook_retry_delays", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split_commas(value)

    def real_seconds(self, simulated: float) -> float:
        """Turn simulated seconds into the real seconds they take at this speedup."""
        return simulated / self.speedup


class SimSettings(SimConfig, BaseSettings):
    """`SimConfig` read from the environment (`RUNWARE_SIM_SPEEDUP=100`, `..._API_KEYS=a,b`)."""

    model_config = SettingsConfigDict(env_prefix="RUNWARE_SIM_", frozen=True, extra="forbid")
