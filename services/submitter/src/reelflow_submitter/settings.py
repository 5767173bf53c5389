"""The submitter's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field

from reelflow_common.settings import (
    CeilingSettings,
    LeaseSettings,
    LogSettings,
    PollingSettings,
    RunwareSettings,
    SubmitReadSettings,
    VisibilitySettings,
    WebhookSettings,
    WorkerSettings,
)


class Settings(
    WorkerSettings,
    PollingSettings,
    LogSettings,
    RunwareSettings,
    WebhookSettings,
    LeaseSettings,
    VisibilitySettings,
    CeilingSettings,
    SubmitReadSettings,
):
    http_port: int = Field(default=8002, ge=0, le=65535, description="/healthz, /readyz, /metrics")
    submit_concurrency: int = Field(
        default=16, ge=1, description="SubmitClip messages in flight, all tenants together"
    )
    tenant_submit_concurrency: int = Field(
        default=8,
        ge=1,
        description="SubmitClip messages of one tenant in flight (per replica), however long"
        " its backlog: the other tenants' lanes are served meanwhile",
    )
    sort_concurrency: int = Field(
        default=64, ge=1, description="messages moved from the shared queue to lanes at once"
    )
    submit_batch_size: int = Field(
        default=16,
        ge=1,
        le=100,
        description="videoInference tasks per Runware request at most: submits handled together"
        " share one request (1: one request per task, as the SDKs send them)",
    )
    submit_batch_window_s: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="with submit_batch_size > 1, how long a submit waits for others to share"
        " its request (0: only those the same turn of the event loop brings)",
    )
    submit_batch_quiet_s: float = Field(
        default=0.002,
        ge=0,
        le=1,
        description="with submit_batch_size > 1, a shared request also goes once no submit has"
        " joined it for this long: a burst of deliveries shares it, and its last submit does not"
        " wait out the window for others that are not coming (submit_batch_window_s or more:"
        " off)",
    )
    lane_announce_interval_s: float = Field(
        default=30, gt=0, description="how often a replica tells the others the lanes it serves"
    )
    budget_check_ttl_s: float = Field(
        default=2,
        ge=0,
        description="a tenant's budget is read at most this often per replica before submits",
    )
    rate_limit_initial_delay_s: float = Field(
        default=2, gt=0, description="every submit pauses this long after a Runware 429"
    )
    rate_limit_max_delay_s: float = Field(
        default=60, gt=0, description="cap of that pause, doubled after each 429 in a row"
    )
    submit_max_attempts: int = Field(
        default=20,
        ge=1,
        description="Runware submits of one clip that Runware refused before it may fail"
        " (20 ≈ 20 min of refusals); submits during an outage do not count",
    )
