"""The submitter's own Prometheus metrics (module level: prometheus_client has one registry).

Only the submitter imports this module, so only its ``/metrics`` exports them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from reelflow_common.topology import SUBMIT_LANE

#: the ``queue`` label under which reelflow_queue_ready_messages holds the ready messages of
#: every tenant lane together (the lanes are ``<prefix>submitter.submit_clip.lane.<tenant>``)
LANES = f"{SUBMIT_LANE}s"

LANE_READY_MAX = Gauge(
    "reelflow_lane_ready_messages_max",
    "Messages waiting in the fullest tenant submit lane this submitter replica consumes (their"
    ' sum is reelflow_queue_ready_messages{queue="submitter.submit_clip.lanes"}), read by every'
    " replica (aggregate with max).",
)

RUNWARE_THROTTLES = Counter(
    "reelflow_runware_throttles_total",
    "Pauses of every submit after a Runware 429: seen here (local) or told by another replica.",
    ["source"],
)

SUBMIT_LANES = Gauge(
    "reelflow_submit_lanes",
    "Tenant submit lanes this submitter replica consumes.",
)

#: the ``source`` values of reelflow_runware_throttles_total, each exported at 0 from the
#: start (a counter with no series reads "No data" on a healthy system)
THROTTLE_SOURCES = ("local", "signal")
for _source in THROTTLE_SOURCES:
    RUNWARE_THROTTLES.labels(source=_source)
