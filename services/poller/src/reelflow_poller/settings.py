"""The poller's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    CeilingSettings,
    LateFollowSettings,
    LeaseSettings,
    LogSettings,
    PollingSettings,
    RunwareSettings,
    StorageSettings,
    VisibilitySettings,
    WorkerSettings,
)


class Settings(
    WorkerSettings,
    PollingSettings,
    LogSettings,
    RunwareSettings,
    LeaseSettings,
    VisibilitySettings,
    CeilingSettings,
    LateFollowSettings,
    StorageSettings,
):
    http_port: int = Field(default=8003, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    poll_concurrency: int = Field(
        default=32, ge=1, description="checks made at once (a CheckClips message carries several)"
    )
    cost_stats_interval_s: float = Field(
        default=300,
        gt=0,
        description="how often the costs this replica saw go to cost_stats (budget estimates)",
    )
    reconcile_interval_s: float = Field(
        default=10,
        gt=0,
        description="how often the reconciler looks for clips whose lease ran out (and the"
        " settle sweep for settlements owed)",
    )
    reconcile_grace_s: float = Field(
        default=30,
        ge=0,
        description="a lease must have run out this long before the reconciler re-arms its clip"
        " (and a settlement been owed this long before the settle sweep makes it)",
    )
    reconcile_batch_size: int = Field(
        default=100,
        ge=1,
        description="projects one reconciler pass (or settle sweep) takes at most",
    )
    progress_step: int = Field(
        default=25,
        ge=0,
        le=99,
        description=(
            "a processing clip's Runware progress is stored (one write and one clip.updated)"
            " each time it passes another step of this many points; 0: never"
        ),
    )
