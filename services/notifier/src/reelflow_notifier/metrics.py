"""The notifier's Prometheus metrics (module level: prometheus_client has one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WS_CONNECTIONS = Gauge(
    "reelflow_ws_connections",
    "WebSocket connections open on this replica, from their admission (before their key is"
    " checked) to their close.",
)

WS_CONNECTIONS_MAX = Gauge(
    "reelflow_ws_connections_max",
    "WebSocket connections this replica holds at once (REELFLOW_WS_MAX_CONNECTIONS); one more"
    " is closed with 1013. 0: no cap.",
)

WS_REFUSALS_TOTAL = Counter(
    "reelflow_ws_refusals_total",
    "Client requests refused by an abuse or load limit, by limit (connections: a socket past"
    " REELFLOW_WS_MAX_CONNECTIONS on this replica; subscribe_rate: a subscribe past"
    " REELFLOW_WS_SUBSCRIBE_RATE_PER_S; key_subscribe_rate: a subscribe past"
    " REELFLOW_WS_KEY_SUBSCRIBE_RATE_PER_S; key_watches: a subscribe past"
    " REELFLOW_WS_MAX_WATCHES_PER_KEY; key_connections: a socket past"
    " REELFLOW_WS_MAX_CONNECTIONS_PER_KEY; key_lookups: a socket whose key this replica does"
    " not know while REELFLOW_AUTH_KEY_LOOKUPS_AT_ONCE other such keys are being looked up).",
    ["limit"],
)

WS_EVENTS_TOTAL = Counter(
    "reelflow_ws_events_total",
    "Events a connection took from the fan-out, by outcome (sent, duplicate, replayed).",
    ["outcome"],
)

WS_SNAPSHOTS_TOTAL = Counter(
    "reelflow_ws_snapshots_total",
    "Snapshots sent, by reason (connect, not_replayable, slow_reader, direct_write_failed).",
    ["reason"],
)

WS_OVERFLOWS_TOTAL = Counter(
    "reelflow_ws_overflows_total",
    "Outboxes cleared because their client read too slowly (each gets a snapshot instead).",
)

WS_BACKLOG_EVENTS = Gauge(
    "reelflow_ws_backlog_events",
    "Events queued for WebSocket clients on this replica, every connection together.",
)

WS_BACKLOG_MAX_EVENTS = Gauge(
    "reelflow_ws_backlog_max_events",
    "Events queued for the slowest WebSocket client on this replica (a snapshot replaces"
    " them past REELFLOW_WS_MAX_BACKLOG).",
)

FANOUT_EVENTS_TOTAL = Counter(
    "reelflow_fanout_events_total",
    "Events this replica's fan-out queue received (routed, unwatched, invalid) or dropped."
    " An unwatched project's event is skipped unparsed by its project_id header and counts"
    " unwatched even when its body is malformed or of an unknown type; invalid counts only"
    " events that were parsed (a watched project's, or one without the header).",
    ["outcome"],
)

# The label values each counter is exported with at 0 from the start: a counter with no
# series reads "No data" on a healthy system (prometheus_client: ``labels()`` without ``inc``).
REFUSAL_LIMITS = (
    "connections",
    "key_connections",
    "key_lookups",
    "subscribe_rate",
    "key_subscribe_rate",
    "key_watches",
)
SNAPSHOT_REASONS = ("connect", "not_replayable", "slow_reader", "direct_write_failed")
for _limit in REFUSAL_LIMITS:
    WS_REFUSALS_TOTAL.labels(limit=_limit)
for _reason in SNAPSHOT_REASONS:
    WS_SNAPSHOTS_TOTAL.labels(reason=_reason)
FANOUT_EVENTS_TOTAL.labels(outcome="dropped")
