"""The notifier's settings: its own fields on top of the shared mixins."""

from __future__ import annotations

from pydantic import Field, model_validator

from reelflow_common.settings import (
    AuthSettings,
    HttpSettings,
    LogSettings,
    MongoSettings,
    ProxySettings,
    SlowClientSettings,
    TopologySettings,
    VideoLinkSettings,
)


class Settings(
    TopologySettings,
    MongoSettings,
    LogSettings,
    HttpSettings,
    SlowClientSettings,
    ProxySettings,
    AuthSettings,
    VideoLinkSettings,
):
    http_port: int = Field(default=8001, ge=0, le=65535)
    ws_ping_interval_s: float = Field(default=20, gt=0, description="server ping interval")
    ws_ping_timeout_s: float = Field(default=20, gt=0, description="drop a client silent this long")
    ws_max_backlog: int = Field(
        default=100, ge=1, description="queued messages before a slow client gets a fresh snapshot"
    )
    ws_max_subscriptions: int = Field(
        default=100, ge=1, description="projects one multiplexed connection may watch at once"
    )
    ws_subscribe_burst: int = Field(
        default=200,
        ge=1,
        description="subscribes one connection may send at once (each reads the project);"
        " at least ws_max_subscriptions, so a client can subscribe again to all of them"
        " on reconnect",
    )
    ws_subscribe_rate_per_s: float = Field(
        default=10,
        gt=0,
        description="subscribes a second one connection may send past its burst; one more is"
        " refused with an error message saying when to send it again",
    )
    ws_key_subscribe_burst: int = Field(
        default=500,
        ge=1,
        description="subscribes all sockets of one API key may send at once on this replica (each"
        " reads the project); at least ws_subscribe_burst",
    )
    ws_key_subscribe_rate_per_s: float = Field(
        default=50,
        gt=0,
        description="subscribes a second all sockets of one API key may send on this replica past"
        " their burst; one more is refused with an error message saying when to send it again",
    )
    ws_max_watches_per_key: int = Field(
        default=20_000,
        ge=1,
        description="projects all sockets of one API key may watch at once on this replica; a"
        " subscribe to one more is refused with an error message",
    )
    ws_max_connections: int = Field(
        # 10,000 sockets peaked at 475-507 MiB of RSS (docs/BENCHMARKS.md): 12,000 are about
        # 610 MiB, under the pod's 640Mi request, leaving ~400 MiB of its 1Gi limit for
        # closed sockets' garbage awaiting a full GC pass, slow readers' backlogs and
        # snapshots; and 20 % above the 10,000 replicas are sized for, so a rollout or a
        # lost node's reconnects fit before anything is refused.
        default=12_000,
        ge=0,
        description="WebSockets open at once on this replica, whatever their keys (0: no cap);"
        " one more is closed with 1013 before its key is checked",
    )
    ws_max_connections_per_key: int = Field(
        default=2_000,
        ge=0,
        description="WebSockets of one API key open at once on this replica (0: no cap); one"
        " more is closed with 4429",
    )
    fanout_max_length: int = Field(
        default=10_000,
        ge=1,
        description="events queued for this replica; past it the oldest are dropped and"
        " every connection catches up from the store",
    )
    fanout_linger_s: float = Field(
        default=10.0,
        ge=0,
        description="a project nobody on this replica watches any more stays bound to its"
        " queue this long, so a client that reconnects or comes back costs no new binding",
    )
    fanout_prefetch: int = Field(
        default=256,
        ge=1,
        description=(
            "events this replica holds in memory at once, besides those held back"
            " for their turn (at most 1,024)"
        ),
    )
    ws_key_check_interval_s: float = Field(
        default=5,
        gt=0,
        description=(
            "how often open sockets' API keys are re-validated; a revoked key's sockets"
            " close within this plus auth_cache_ttl_s"
        ),
    )

    @model_validator(mode="after")
    def _subscribe_bursts_cover_a_reconnect(self) -> Settings:
        if self.ws_subscribe_burst < self.ws_max_subscriptions:
            raise ValueError(
                f"ws_subscribe_burst ({self.ws_subscribe_burst}) must be at least"
                f" ws_max_subscriptions ({self.ws_max_subscriptions}): a client subscribes"
                " again to every project it watches when it reconnects"
            )
        if self.ws_key_subscribe_burst < self.ws_subscribe_burst:
            raise ValueError(
                f"ws_key_subscribe_burst ({self.ws_key_subscribe_burst}) must be at least"
                f" ws_subscribe_burst ({self.ws_subscribe_burst}): one socket's burst must fit"
                " in its key's"
            )
        if self.ws_max_watches_per_key < self.ws_max_subscriptions:
            raise ValueError(
                f"ws_max_watches_per_key ({self.ws_max_watches_per_key}) must be at least"
                f" ws_max_subscriptions ({self.ws_max_subscriptions}): one socket may watch"
                " that many"
            )
        return self
