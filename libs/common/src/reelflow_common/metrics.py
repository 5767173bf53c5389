"""Prometheus metrics shared by every service.

The metric objects live at module level on purpose: prometheus_client keeps one
process-wide registry, and defining a metric twice raises. They hold no
connections and read no settings, so importing this module has no side effects
beyond registering the names. Every service imports this module, so every service
exports these: a metric only one service sets lives in that service's own module
(``reelflow_submitter.metrics``, ``reelflow_common.tracking.metrics`` for the poller's
reconcilers, ``reelflow_notifier.metrics``), lest the others export it too.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

#: ``outcome`` of reelflow_messages_total: what ``consume()`` did with a delivery
#: (``unsettled``: its channel was gone before the ack, and the broker redelivers it)
MessageOutcome = Literal["acked", "rejected", "retried", "failed", "dead_lettered", "unsettled"]

#: ``result`` of reelflow_published_total: what the broker said to a publish
#: (``not_connected``: no channel to RabbitMQ yet, counted under ``kind="any"``)
PublishResult = Literal["confirmed", "refused", "unconfirmed", "unroutable", "not_connected"]

#: ``outcome`` of reelflow_runware_requests_total: how one HTTP request to Runware ended
#: (``conflict``: a 4xx whose every error is ``conflictTaskUUID``, a resubmit of a task
#: Runware has, as after a lost answer: expected, not an error)
RunwareOutcome = Literal["ok", "conflict", "http_4xx", "http_5xx", "transport_error"]

MESSAGES_TOTAL = Counter(
    "reelflow_messages_total",
    "Messages consumed, by work queue and outcome.",
    ["queue", "outcome"],
)

MESSAGE_SECONDS = Histogram(
    "reelflow_message_seconds",
    "Time spent handling one message, acknowledgement included.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

DEAD_LETTERS = Gauge(
    "reelflow_dead_letters",
    "Messages in a work queue's DLQ, read by every replica of its consumer (aggregate with max).",
    ["queue"],
)

PUBLISHED_TOTAL = Counter(
    "reelflow_published_total",
    "Messages published, by routing key kind and result.",
    ["kind", "result"],
)


QUEUE_READY = Gauge(
    "reelflow_queue_ready_messages",
    "Messages waiting in a work queue for a consumer (the consumer lag), read by every replica"
    " of its consumer (aggregate with max).",
    ["queue"],
)

RUNWARE_REQUESTS_TOTAL = Counter(
    "reelflow_runware_requests_total",
    "HTTP requests to Runware, by task type and outcome (ok; conflict: a resubmit of a task"
    " Runware has, answered 400 conflictTaskUUID, expected after a lost answer; http_4xx;"
    " http_5xx; transport_error: no answer).",
    ["task_type", "outcome"],
)

RUNWARE_REQUEST_SECONDS = Histogram(
    "reelflow_runware_request_seconds",
    "Time one HTTP request to Runware took, by task type (failed ones included).",
    ["task_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


CLIPS_FINISHED_TOTAL = Counter(
    "reelflow_clips_finished_total",
    "Clips that ended, by status (success, failed, cancelled) and, for a failed one, its error"
    " code (timedOut, budgetExceeded, runwareUnavailable, a Runware code reelflow knows by name,"
    " or other); counted once, by the writer whose update ended the clip.",
    ["status", "code"],
)


VIDEO_COPIES_TOTAL = Counter(
    "reelflow_video_copies_total",
    "Copies of finished videos to reelflow's storage: stored, retried (after a failed try),"
    " failed (given up on: see reelflow-admin assets list --failed), duplicate.",
    ["outcome"],
)
