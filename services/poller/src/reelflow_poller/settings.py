"""The poller's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    HttpSettings,
    LogSettings,
    MongoSettings,
    RunwareSettings,
    TopologySettings,
)


class Settings(TopologySettings, MongoSettings, LogSettings, HttpSettings, RunwareSettings):
    http_port: int = Field(default=8003, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    poll_concurrency: int = Field(default=32, ge=1, description="CheckClip messages in flight")
    poll_max_age_s: float = Field(
        default=7200,
        gt=0,
        description="a clip still processing this long after submit fails as timedOut",
    )
    not_found_grace_s: float = Field(
        default=120,
        ge=0,
        description="an unknown-task answer this soon after submit is taken as 'not visible yet'",
    )
