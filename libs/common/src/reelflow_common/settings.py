"""Typed settings, one mixin per dependency, combined per service.

Every variable has the prefix ``REELFLOW_`` (``REELFLOW_AMQP_URL``,
``REELFLOW_MONGO_URL``, …). The Runware key also answers to the plain
``RUNWARE_API_KEY`` that Runware's own SDKs read. Tests pass values as
arguments and never edit ``os.environ``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlencode

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_T = TypeVar("_T")


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value


#: An optional setting for which an empty value means unset: Compose passes an unset
#: variable as "" (``${REELFLOW_PUBLIC_BASE_URL:-}``).
EmptyIsUnset = Annotated[_T | None, BeforeValidator(_empty_is_unset)]


class ReelflowSettings(BaseSettings):
    """Base of every settings class: the ``REELFLOW_`` prefix, no .env magic."""

    model_config = SettingsConfigDict(env_prefix="REELFLOW_", extra="ignore", populate_by_name=True)


class LogSettings(ReelflowSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level logged"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "REELFLOW_OTEL_EXPORTER_OTLP_ENDPOINT",
            "otel_exporter_otlp_endpoint",
        ),
        description=(
            "OpenTelemetry collector (OTLP/HTTP base URL, e.g. http://otel-collector:4318);"
            " unset: no traces are exported"
        ),
    )


class AmqpSettings(ReelflowSettings):
    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"), description="RabbitMQ (secret)"
    )
    amqp_prefix: str = Field(
        default="", description="prefix for every exchange and queue name (test isolation)"
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="wait this long for the broker to confirm a publish"
    )
    drain_timeout_s: float = Field(
        default=20.0, gt=0, description="on SIGTERM, wait this long for messages in flight"
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="handler failures (bugs, not outages) of one message before it goes to the DLQ",
    )


class MongoSettings(ReelflowSettings):
    mongo_url: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017"), description="MongoDB (secret)"
    )
    mongo_database: str = Field(default="reelflow", description="database name")
    mongo_timeout_s: float = Field(default=10.0, gt=0, description="per MongoDB operation")


class RunwareSettings(ReelflowSettings):
    runware_base_url: str = Field(
        default="https://api.runware.ai", description="Runware REST base (POST {base}/v1)"
    )
    runware_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "REELFLOW_RUNWARE_API_KEY", "RUNWARE_API_KEY", "runware_api_key"
        ),
        description="Runware API key (secret); unset under make run: the simulator",
    )
    runware_timeout_s: float = Field(default=30.0, gt=0, description="per HTTP request")
    runware_max_in_flight: int = Field(
        default=16, ge=1, description="Runware HTTP requests in flight per process"
    )
    runware_poll_batch_size: int = Field(
        default=1,
        ge=1,
        le=100,
        description=(
            "getResponse tasks per HTTP request (1 as the SDKs do; more is unconfirmed on"
            " the real service); see poll_batch_window_s"
        ),
    )


class HttpSettings(ReelflowSettings):
    """Where a service listens for /healthz, /readyz and /metrics (and its own API)."""

    http_host: str = Field(default="0.0.0.0", description="listen address")
    http_port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="HTTP port (the API, or /healthz /readyz /metrics)",
    )


class SlowClientSettings(ReelflowSettings):
    """How long a client of a public HTTP server (the api, the notifier) may take to ask."""

    http_header_timeout_s: float = Field(
        default=10,
        gt=0,
        description="a client must send a request's headers within this, else it is disconnected",
    )


class ProxySettings(ReelflowSettings):
    """What a public HTTP server (the api, the notifier) believes of the proxy in front of it."""

    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        min_length=1,
        description=(
            "peers whose X-Forwarded-For and X-Forwarded-Proto are believed (the client's"
            " address and scheme in logs and traces), comma-separated IP addresses or"
            " networks; * believes every peer, and then the client's address is whatever"
            " the client put first in X-Forwarded-For"
        ),
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_peers(cls, value: str) -> str:
        """``*`` alone, or each entry an IP address or network, written as uvicorn parses it.

        uvicorn takes any entry it cannot parse for a literal, compared with the peer's
        address as text (a unix socket's path): these servers listen on TCP alone, where
        such an entry matches no peer, so it is a mistake, refused here at start rather
        than trusting nobody in silence. A network with host bits set (``10.0.0.1/8``),
        which uvicorn would take for such a literal, is written as its network.
        """
        if value.strip() == "*":
            return "*"
        peers: list[str] = []
        for entry in (part.strip() for part in value.split(",")):
            try:
                peer = ipaddress.ip_network(entry, strict=False) if "/" in entry else None
                peers.append(str(peer or ipaddress.ip_address(entry)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network: comma-separated addresses"
                    " (10.0.0.5, fd00::5) and networks (10.0.0.0/8), or * alone"
                ) from None
        return ",".join(peers)


class TopologySettings(AmqpSettings):
    """The delay ladders. Every service declares the same topology from these."""

    # The checks' wait queues: the poll planner's delays are put on this ladder, each on
    # the longest rung not above it (``reelflow_common.polling.live``).
    poll_initial_delay_s: float = Field(
        default=1.0,
        gt=0,
        description="shortest wait before a check (first rung of the checks' wait-queue ladder)",
    )
    poll_backoff: float = Field(
        default=1.35, ge=1.0, description="ratio between rungs of the checks' wait-queue ladder"
    )
    poll_max_delay_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "longest wait before a check (top rung); keep it at or above poll_max_interval_s"
            " and poll_webhook_interval_s"
        ),
    )
    retry_initial_delay_s: float = Field(
        default=2.0, gt=0, description="first retry after a transient failure"
    )
    retry_max_delay_s: float = Field(default=120.0, gt=0, description="cap of the retry delay")
    work_queue_max_length: int = Field(
        default=100_000,
        ge=1,
        description="messages one work queue holds; past it the broker refuses publishes (503)",
    )
    wait_queue_max_length: int = Field(
        default=100_000,
        ge=1,
        description="messages one wait (delay) queue holds; past it retries back off in-process",
    )
    lane_expires_s: float = Field(
        default=7 * 86_400,
        ge=0,
        description=(
            "a tenant's submit lane no submitter has consumed for this long is deleted by"
            " RabbitMQ (x-expires); 0: never"
        ),
    )
    copy_initial_delay_s: float = Field(
        default=5.0, gt=0, description="first retry of a video copy that failed"
    )
    copy_max_delay_s: float = Field(
        default=300.0, gt=0, description="cap of the delay between two copies of one video"
    )


class WorkerSettings(TopologySettings, MongoSettings, HttpSettings):
    """What a worker's start reads (``reelflow_common.worker``): the submitter's, the poller's."""


class LeaseSettings(ReelflowSettings):
    """How long a clip's one live chain (submit or poll) holds it before the reconciler steps in."""

    lease_s: float = Field(
        default=600,
        gt=0,
        description=(
            "a chain renews its clip's lease before this runs out; an expired lease lets the"
            " reconciler re-arm the clip"
        ),
    )


class SubmitReadSettings(ReelflowSettings):
    """When a clip's first submit reads the clip (cancelled meanwhile?) before buying its task:
    the submitter applies it, the api's cancel counts the clips it may still buy by it."""

    submit_read_after_s: float = Field(
        default=10,
        ge=0,
        description="a clip's first submit reads the clip first (cancelled meanwhile?) when it"
        " was queued longer ago than this; sooner, it is submitted without a read, so a cancel"
        " that soon after the POST may still buy it (followed and billed); the api counts such"
        " clips in a cancel's clips_may_be_billed: set it alike for both",
    )


class VisibilitySettings(ReelflowSettings):
    not_found_grace_s: float = Field(
        default=120,
        ge=0,
        description="an unknown-task answer this soon after submit is taken as 'not visible yet'",
    )


class CeilingSettings(ReelflowSettings):
    """How long a clip is followed (the poller, and ``reelflow-admin reconcile``)."""

    poll_max_age_s: float = Field(
        default=7200,
        gt=0,
        description=(
            "the ceiling: a clip not finished this long after submit (or queued this long)"
            " fails as timedOut with the last error seen; one Runware could not take through"
            " an outage this long after its first submit, as runwareUnavailable"
        ),
    )


class LateFollowSettings(ReelflowSettings):
    """How long a task the ceiling gave up on is still followed, slowly (the poller, and
    ``reelflow-admin reconcile``): Runware never said it failed, and may still finish and
    bill it."""

    late_follow_s: float = Field(
        default=86_400,
        ge=0,
        description=(
            "a clip that failed timedOut (the ceiling: Runware never said its task failed) has"
            " its task checked again for this long after, slowly, its reservation held: a"
            " video that comes is recorded in its attempts and billed once, an error or not"
            " found ends it; 0: not followed (its video is then lost unless a webhook names it)"
        ),
    )
    late_follow_max_delay_s: float = Field(
        default=1800,
        gt=0,
        description=(
            "longest wait between two checks of a task followed after its clip timed out"
            " (they start at poll_max_delay_s and double)"
        ),
    )


class WebhookSettings(ReelflowSettings):
    """Where Runware can reach reelflow. Without ``public_base_url`` only polling is used."""

    public_base_url: EmptyIsUnset[str] = Field(
        default=None, description="e.g. https://reelflow.example.com; enables Runware webhooks"
    )
    webhook_secret: EmptyIsUnset[SecretStr] = Field(
        default=None, description="secret path segment of the webhook URL (per deployment)"
    )

    @property
    def webhooks_enabled(self) -> bool:
        """Whether Runware is given a ``webhookURL`` (and checks are planned as a safety net)."""
        return self.public_base_url is not None and self.webhook_secret is not None

    def webhook_url(self, project_id: str, scene_index: int) -> str | None:
        """The ``webhookURL`` to give Runware for one clip, or None without webhooks."""
        if self.public_base_url is None or self.webhook_secret is None:
            return None
        base = self.public_base_url.rstrip("/")
        secret = self.webhook_secret.get_secret_value()
        query = urlencode({"project_id": project_id, "scene": scene_index})
        return f"{base}/v1/webhooks/runware/{secret}?{query}"


class PollingSettings(ReelflowSettings):
    """How the poller plans its checks and shares what it learns (``reelflow_common.polling``)."""

    poll_max_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="longest wait between two checks of a processing clip (freshness guarantee)",
    )
    poll_delay_target_s: float = Field(
        default=10.0,
        gt=0,
        description="detection delay (finished at Runware → recorded) the learned plan aims under",
    )
    poll_late_fraction: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="share of clips the plan may see later than poll_delay_target_s",
    )
    poll_first_quantile: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description=(
            "no check before this quantile of the model's observed completion times;"
            " the first comes at most poll_delay_target_s after it"
        ),
    )
    poll_prior_median_s: float = Field(
        default=110.0,
        gt=0,
        description=(
            "median completion time assumed for a model with no observations yet"
            " (log-normal prior, sigma 0.7); observations replace it"
        ),
    )
    poll_webhook_quantile: float = Field(
        default=0.99,
        ge=0,
        lt=1,
        description="with webhooks, the first safety-net check comes at this quantile",
    )
    poll_webhook_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="with webhooks, the safety net's interval after its first check",
    )
    poll_stats_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="completion counts are written to and re-read from poll_stats this often",
    )
    poll_stats_days: int = Field(
        default=7, ge=1, description="completion counts older than this many days are ignored"
    )
    poll_batch_window_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "with runware_poll_batch_size > 1, getResponse calls arriving this close"
            " together share one HTTP request"
        ),
    )
    poll_checks_together: bool = Field(
        default=True,
        description=(
            "checks made together travel in one CheckClips message; false while a poller"
            " of a release before it may still run (it refuses them; docs/ARCHITECTURE.md,"
            " Upgrades)"
        ),
    )


class AuthSettings(ReelflowSettings):
    """How long a process trusts what it read about an API key (the api and the notifier)."""

    auth_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "an API key's tenant is remembered this long (0: never); a revoked key"
            " still works for at most this long"
        ),
    )
    auth_cache_size: int = Field(default=10_000, ge=1, description="valid API keys remembered")
    auth_cache_unknown_size: int = Field(
        default=1_000,
        ge=1,
        description=(
            "unknown (or revoked, expired) API keys remembered, apart from the valid ones: a"
            " flood of wrong keys cannot push a valid one out"
        ),
    )
    auth_key_lookups_at_once: int = Field(
        default=8,
        ge=1,
        description=(
            "API keys not known to be valid looked up in MongoDB at once; a request (api: 503)"
            " or socket (notifier: close 1013) of one more such key is refused at once, one of"
            " a key being looked up shares that lookup"
        ),
    )


class CostEstimateSettings(ReelflowSettings):
    """How a clip's cost is estimated before Runware says it (the api's reservations, and
    ``reelflow-admin`` counting clips in flight that hold no reservation)."""

    cost_fallback_usd_per_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "estimated USD per second of video for a model and size (width x height) whose"
            " costs were never observed, unless a model or size seen cost more a second (then"
            " that): budgets reserve this much until the poller has seen that size's prices;"
            " set it to the dearest price per second the tenants may use (4K included), or a"
            " model's or size's first clips may spend past a budget"
        ),
    )
    cost_estimate_ttl_s: float = Field(
        default=60,
        ge=0,
        description="how long the API keeps the observed prices per model and size",
    )
    # Here, not with the api's other scene defaults: an estimate of a scene stored without a
    # duration (``reelflow-admin`` counting what a tenant spent) takes the api's default.
    default_duration: float = Field(
        default=4, gt=0, description="seconds, for a scene that names none"
    )


class VideoLinkSettings(ReelflowSettings):
    """reelflow's own video URLs: signed, expiring links the api serves (``storage.links``).

    Every service that shows a stored video (the api, the notifier, the poller
    that announces it) signs with the same secret.
    """

    video_url_secret: SecretStr | None = Field(
        default=None,
        description="key of the HMAC that signs reelflow's own video URLs (secret); unset: none",
    )
    video_url_ttl_s: float = Field(
        default=86_400,
        gt=0,
        description="how long one of reelflow's own video URLs stays valid at least; its"
        " expiry is rounded up to a quarter of this, so that reads meanwhile get the same URL"
        " (valid up to a quarter longer)",
    )
    video_public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^?#]+$",
        description=(
            "base of reelflow's own video URLs, e.g. https://reelflow.example.com;"
            " unset: URLs relative to the api (/v1/videos/...)"
        ),
    )


class StorageSettings(VideoLinkSettings):
    """Where finished videos are copied to, and how a copy is checked."""

    storage_backend: Literal["none", "local", "s3"] = Field(
        default="none",
        description="none: Runware's URL only; local: storage_dir; s3: an S3-compatible bucket",
    )
    storage_dir: str = Field(
        default="videos", description="local backend: the directory the videos are kept in"
    )
    s3_bucket: EmptyIsUnset[str] = Field(
        default=None, description="s3 backend: the bucket (private)"
    )
    s3_endpoint_url: EmptyIsUnset[str] = Field(
        default=None, description="s3 backend: an S3-compatible endpoint; unset: AWS"
    )
    s3_region: str = Field(default="us-east-1", description="s3 backend: the bucket's region")
    s3_access_key_id: EmptyIsUnset[SecretStr] = Field(
        default=None, description="s3 backend (secret); unset: the default AWS credential chain"
    )
    s3_secret_access_key: EmptyIsUnset[SecretStr] = Field(
        default=None, description="s3 backend (secret)"
    )
    s3_presign_ttl_s: float = Field(
        default=300,
        gt=0,
        le=604_800,
        description="s3 backend: lifetime of the bucket URL a signed video URL redirects to",
    )
    video_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="a video larger than this is not copied (the copy fails as videoTooLarge)",
    )
    copy_timeout_s: float = Field(
        default=300,
        gt=0,
        description=(
            "deadline of one whole copy (download from Runware and upload to storage);"
            " past it, the copy is tried again"
        ),
    )
    copy_gone_retries: int = Field(
        default=2,
        ge=0,
        description=(
            "first copies of a video on which a 403/404/410 from Runware's CDN is tried again"
            " (right after a task ends, the video may not be served yet); later ones give up"
        ),
    )
    copy_max_attempts: int = Field(
        default=8,
        ge=1,
        description="copies of one video tried (on the copy ladder) before it is marked failed",
    )
    copy_concurrency: int = Field(default=4, ge=1, description="videos copied at once, per poller")
    video_copy_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["runware.ai"],
        description=(
            "host suffixes a video may be copied from, the URL and every redirect, as a JSON"
            " list (empty: any host); each host must resolve to public addresses only, unless"
            " it is in video_copy_internal_hosts"
        ),
    )
    video_copy_internal_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "hosts (whole names, not suffixes) a video may be copied from although they resolve"
            " to an address off the public internet (private, loopback, link-local, ...), as a"
            ' JSON list: the simulator\'s, e.g. ["127.0.0.1"]; each must also be under'
            " video_copy_allowed_hosts"
        ),
    )
    video_copy_allow_http: bool = Field(
        default=False,
        description=(
            "copy videos from plain http URLs too (the simulator, development); off: https"
            " only, redirects included"
        ),
    )
    copy_sweep_after_s: float = Field(
        default=3600,
        gt=0,
        description=(
            "a success still without a copy (stored or failed) this long after it ended gets its"
            " StoreVideo again (a lost or dead-lettered command); keep it above the copy ladder"
        ),
    )

    @property
    def copies_enabled(self) -> bool:
        return self.storage_backend != "none"

    @model_validator(mode="after")
    def _complete(self) -> StorageSettings:
        if self.storage_backend != "none" and self.video_url_secret is None:
            raise ValueError("storage_backend needs video_url_secret (signs the video URLs)")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("storage_backend s3 needs s3_bucket")
        return self
