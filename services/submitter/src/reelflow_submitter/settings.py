"""The submitter's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    HttpSettings,
    LeaseSettings,
    LogSettings,
    MongoSettings,
    PollingSettings,
    RunwareSettings,
    TopologySettings,
    VisibilitySettings,
    WebhookSettings,
)


class Settings(
    TopologySettings,
    MongoSettings,
    PollingSettings,
    LogSettings,
    HttpSettings,
    RunwareSettings,
    WebhookSettings,
    LeaseSettings,
    VisibilitySettings,
):
    http_port: int = Field(default=8002, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    submit_concurrency: int = Field(default=16, ge=1, description="SubmitClip messages in flight")
    submit_max_attempts: int = Field(
        default=20,
        ge=1,
        description="Runware submits of one clip before it may fail (20 ≈ 20 min of refusals)",
    )
