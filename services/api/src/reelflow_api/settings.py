"""The API's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    AuthSettings,
    HttpSettings,
    LogSettings,
    MongoSettings,
    TopologySettings,
    WebhookSettings,
)


class Settings(
    TopologySettings, MongoSettings, LogSettings, HttpSettings, WebhookSettings, AuthSettings
):
    default_model: str = Field(
        default="google:3@3", description="model of a project that names none"
    )
    default_duration: float = Field(
        default=4, gt=0, description="seconds, for a scene that names none"
    )
    default_width: int = Field(default=1280, ge=64, le=4096, description="pixels, if none given")
    default_height: int = Field(default=720, ge=64, le=4096, description="pixels, if none given")
    max_wait_s: float = Field(default=120, ge=0, description="upper bound of ?wait=")
    wait_check_interval_s: float = Field(
        default=0.5, gt=0, description="how often a waiting POST re-reads its project"
    )
