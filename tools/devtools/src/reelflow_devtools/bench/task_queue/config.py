"""The baseline's settings, from ``TQ_*`` variables, and its constants."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: the Runware SDK's polling schedule (docs/RUNWARE.md), in provider seconds
SDK_FIRST_S, SDK_SECOND_S, SDK_BACKOFF, SDK_CAP_S = 1.0, 0.5, 1.5, 10.0
#: submits tried in all when Runware cannot be reached or answers 429/5xx
SUBMIT_ATTEMPTS = 5
Document = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """Everything from the environment (``TQ_<FIELD>``)."""

    amqp_url: str
    mongo_url: str
    database: str
    runware_url: str
    runware_api_key: str
    #: the simulator's speedup: the SDK's schedule is divided by it, as reelflow's is
    speedup: float = 1.0
    prefix: str = ""
    port: int = 0
    #: deliveries in flight per worker; the bench sets them so that its workers together
    #: have as many in flight as reelflow's submitter and poller
    #: (:func:`reelflow_devtools.bench.task_queue_run.prefetches`)
    submit_prefetch: int = 4
    poll_prefetch: int = 16
    #: the queue arguments reelflow's topology declares (the bench passes its values):
    #: deliveries of one message before a work queue drops it, messages one wait queue holds
    delivery_limit: int = 100
    wait_queue_max_length: int = 100_000
    model: str = "google:3@3"

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            amqp_url=env["TQ_AMQP_URL"],
            mongo_url=env["TQ_MONGO_URL"],
            database=env["TQ_DATABASE"],
            runware_url=env["TQ_RUNWARE_URL"],
            runware_api_key=env["TQ_RUNWARE_API_KEY"],
            speedup=float(env.get("TQ_SPEEDUP", "1")),
            prefix=env.get("TQ_PREFIX", ""),
            port=int(env.get("TQ_PORT", "0")),
            submit_prefetch=int(env.get("TQ_SUBMIT_PREFETCH", "4")),
            poll_prefetch=int(env.get("TQ_POLL_PREFETCH", "16")),
            delivery_limit=int(env.get("TQ_DELIVERY_LIMIT", "100")),
            wait_queue_max_length=int(env.get("TQ_WAIT_QUEUE_MAX_LENGTH", "100000")),
        )

    def env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back."""
        return {
            "TQ_AMQP_URL": self.amqp_url,
            "TQ_MONGO_URL": self.mongo_url,
            "TQ_DATABASE": self.database,
            "TQ_RUNWARE_URL": self.runware_url,
            "TQ_RUNWARE_API_KEY": self.runware_api_key,
            "TQ_SPEEDUP": f"{self.speedup:g}",
            "TQ_PREFIX": self.prefix,
            "TQ_PORT": str(self.port),
            "TQ_SUBMIT_PREFETCH": str(self.submit_prefetch),
            "TQ_POLL_PREFETCH": str(self.poll_prefetch),
            "TQ_DELIVERY_LIMIT": str(self.delivery_limit),
            "TQ_WAIT_QUEUE_MAX_LENGTH": str(self.wait_queue_max_length),
        }
