"""The submitter's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    HttpSettings,
    LogSettings,
    MongoSettings,
    RunwareSettings,
    TopologySettings,
    WebhookSettings,
)


class Settings(
    TopologySettings, MongoSettings, LogSettings, HttpSettings, RunwareSettings, WebhookSettings
):
    http_port: int = Field(default=8002, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    submit_concurrency: int = Field(default=16, ge=1, description="SubmitClip messages in flight")
    submit_max_attempts: int = Field(
        default=20,
        ge=1,
        description="Runware submits of one clip before it may fail (20 ≈ 20 min of refusals)",
    )
    sweep_interval_s: float = Field(
        default=30, gt=0, description="how often undispatched projects are looked for"
    )
    sweep_grace_s: float = Field(
        default=60, gt=0, description="age after which an undispatched project is dispatched again"
    )
