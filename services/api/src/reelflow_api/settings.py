"""The API's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from reelflow_common.settings import (
    AuthSettings,
    CostEstimateSettings,
    HttpSettings,
    LeaseSettings,
    LogSettings,
    MongoSettings,
    ProxySettings,
    SlowClientSettings,
    StorageSettings,
    SubmitReadSettings,
    TopologySettings,
    WebhookSettings,
)
from reelflow_common.store.tickets import DEFAULT_TICKET_TTL_S

#: an HTTP header's name (RFC 9110's token), never the wildcard ``*`` (every header allowed)
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'+.^_`|~0-9A-Za-z-]+$")]


class Settings(
    TopologySettings,
    MongoSettings,
    LogSettings,
    HttpSettings,
    SlowClientSettings,
    ProxySettings,
    WebhookSettings,
    LeaseSettings,
    AuthSettings,
    CostEstimateSettings,
    StorageSettings,
    SubmitReadSettings,
):
    default_model: str = Field(
        default="google:3@3", description="model of a project that names none"
    )
    default_width: int = Field(default=1280, ge=64, le=4096, description="pixels, if none given")
    default_height: int = Field(default=720, ge=64, le=4096, description="pixels, if none given")
    max_wait_s: float = Field(default=120, ge=0, description="upper bound of ?wait=")
    wait_check_interval_s: float = Field(
        default=5,
        gt=0,
        description=(
            "how often a waiting POST re-reads its project when no event woke it"
            " (a safety net for an event lost in a reconnect)"
        ),
    )
    lane_ttl_s: float = Field(
        default=90,
        ge=0,
        description=(
            "how long a submitter's word that it consumes a tenant's lane holds: meanwhile the"
            " tenant's new clips go straight to its lane, past the sorting hop (0: never, every"
            " clip through the shared queue); above the submitters' lane_announce_interval_s"
        ),
    )
    webhook_max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="a Runware webhook body larger than this is refused (413) before it is parsed",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="largest request body, in bytes (413 past it, before parsing)",
    )
    max_in_flight: int = Field(
        default=32,
        ge=1,
        description="requests in progress before new ones get an immediate 503 with Retry-After",
    )
    max_in_flight_per_key: int = Field(
        default=24,
        ge=1,
        description="requests of one API key in progress before its new ones get an immediate"
        " 429 with Retry-After (max_in_flight is shared by every key: this leaves room for others)",
    )
    max_in_flight_per_tenant: int | None = Field(
        default=None,
        ge=1,
        description="requests of one tenant (all its API keys together) in progress before its"
        " new ones get an immediate 429 with Retry-After; less than max_in_flight, so that one"
        " tenant with several keys (as during a rotation) leaves room for others; unset: three"
        " quarters of max_in_flight (24 of 32)",
    )
    max_waiters: int = Field(
        default=100,
        ge=0,
        description="POSTs waiting on ?wait= at once; past it a POST answers at once (202)",
    )
    public_ws_url: str | None = Field(
        default=None,
        pattern=r"^wss?://[^/?#]+$",
        description=(
            "where browsers reach the notifier, e.g. wss://reelflow.example.com;"
            " unset: port 8001 on the host the dashboard was loaded from"
        ),
    )
    ws_ticket_ttl_s: float = Field(
        default=DEFAULT_TICKET_TTL_S, gt=0, le=600, description="lifetime of a WebSocket ticket"
    )
    ws_ticket_burst: int = Field(
        default=5_000,
        ge=1,
        description="WebSocket tickets one API key may get at once from this replica (each is"
        " a MongoDB write); a frontend's browsers all reconnecting after a notifier deploy"
        " ask for one each",
    )
    ws_ticket_rate_per_s: float = Field(
        default=500,
        gt=0,
        description="WebSocket tickets a second one API key may get from this replica past its"
        " burst; one more is 429 with Retry-After",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description=(
            "origins whose pages may call the API from a browser (CORS), as a JSON list,"
            ' e.g. ["https://app.example.com"]; empty: CORS is off'
        ),
    )
    cors_allow_headers: list[HeaderName] = Field(
        default_factory=list,
        description=(
            "request headers those origins' pages may send besides the ones always allowed"
            " (Authorization, Content-Type, Idempotency-Key, X-Correlation-ID, If-None-Match,"
            " and browser tracing's traceparent, tracestate and baggage), as a JSON list,"
            ' e.g. ["sentry-trace"] for a monitoring tool that adds its own; names only, no'
            " wildcard"
        ),
    )
    http_body_timeout_s: float = Field(
        default=30,
        gt=0,
        description="a client must send a request's body within this of its start; else 408",
    )
    http_keepalive_timeout_s: int = Field(
        default=5, ge=1, description="an idle keep-alive connection closes after this"
    )

    @property
    def tenant_in_flight_cap(self) -> int:
        """Requests one tenant may have in progress: ``max_in_flight_per_tenant``, or three
        quarters of ``max_in_flight`` (at least 1) when it is not set, so a deployment that
        lowered ``max_in_flight`` alone keeps a tenant below it."""
        if self.max_in_flight_per_tenant is not None:
            return self.max_in_flight_per_tenant
        return max(1, self.max_in_flight * 3 // 4)

    @model_validator(mode="after")
    def _one_tenant_leaves_room(self) -> Settings:
        cap = self.max_in_flight_per_tenant
        if cap is not None and cap >= self.max_in_flight:
            raise ValueError(
                f"max_in_flight_per_tenant ({cap}) must be less than"
                f" max_in_flight ({self.max_in_flight}): one tenant's requests would leave no"
                " room for other tenants'"
            )
        return self
