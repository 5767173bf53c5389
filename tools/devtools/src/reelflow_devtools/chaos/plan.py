"""What a chaos run does: its size, its faults, its pace, and the services' settings for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Runware's faults, as the simulator injects them (its README lists the settings)
SIM_FAULTS = {
    "RUNWARE_SIM_RATE_503": "0.05",
    "RUNWARE_SIM_RATE_429": "0.05",
    "RUNWARE_SIM_DROP_RATE": "0.02",
    "RUNWARE_SIM_TASK_ERROR_RATE": "0.02",
    "RUNWARE_SIM_HANG_RATE": "0.01",
    "RUNWARE_SIM_WEBHOOK_DROP_RATE": "0.10",
    "RUNWARE_SIM_WEBHOOK_DUPLICATE_RATE": "0.10",
    # a few quick retries, so a webhook to an api that is down is sometimes lost for good
    "RUNWARE_SIM_WEBHOOK_RETRY_DELAYS": "1,2,4",
    "RUNWARE_SIM_WEBHOOK_TIMEOUT": "5",
}

#: every process the monkey kills: the four services, the broker node, the database
SERVICES = ("api", "notifier", "submitter", "poller")
RABBITMQ = "rabbitmq"
MONGODB = "mongodb"
TARGETS = (*SERVICES, RABBITMQ, MONGODB)


@dataclass(frozen=True)
class ChaosPlan:
    """One run's size and pace. Times are real seconds unless they say simulated."""

    clips: int = 1000
    scenes_per_project: int = 10
    #: projects are created and processes killed during this window
    duration_s: float = 900.0
    seed: int = 1
    #: simulated seconds per real second
    speedup: float = 20.0
    #: each clip's simulated latency is drawn uniformly from this range
    latency_min_s: float = 20.0
    latency_max_s: float = 300.0
    #: a pause between two kills is drawn from this range
    kill_every_min_s: float = 8.0
    kill_every_max_s: float = 25.0
    #: how long a killed process stays down, drawn from this range (plus its start)
    down_min_s: float = 0.5
    down_max_s: float = 6.0
    #: a share of the services' ends that are a SIGTERM (a deploy) rather than a SIGKILL;
    #: the same share of broker and database outages see a deploy of one service
    stop_share: float = 0.3
    #: a SIGTERM'd service must have exited within this (drain, then closing its connections)
    stop_bound_s: float = 30.0
    watchers: int = 6
    forged_webhooks: int = 60
    poison_messages: int = 6
    #: after the window: every clip must be terminal within this
    converge_deadline_s: float = 600.0
    #: the clips' ceiling (``REELFLOW_POLL_MAX_AGE_S``): how a hung task ends
    poll_max_age_s: float = 150.0
    lease_s: float = 10.0

    @property
    def projects(self) -> int:
        return -(-self.clips // self.scenes_per_project)

    def service_settings(self, videos: Path) -> dict[str, str]:
        """Short ladders, leases and reconciles: a killed chain is re-armed within seconds.

        Finished videos are copied to ``videos`` (the local storage backend), on a
        short copy ladder.
        """
        return {
            "REELFLOW_STORAGE_BACKEND": "local",
            "REELFLOW_STORAGE_DIR": str(videos),
            "REELFLOW_VIDEO_URL_SECRET": "chaos-video-url-secret",
            "REELFLOW_COPY_INITIAL_DELAY_S": "0.5",
            "REELFLOW_COPY_MAX_DELAY_S": "2.0",
            "REELFLOW_LOG_LEVEL": "INFO",
            "REELFLOW_POLL_INITIAL_DELAY_S": "0.5",
            "REELFLOW_POLL_BACKOFF": "1.5",
            "REELFLOW_POLL_MAX_DELAY_S": "2.0",
            # the learned planner: no check further apart than the simulated clips warrant
            "REELFLOW_POLL_MAX_INTERVAL_S": "3.0",
            "REELFLOW_POLL_WEBHOOK_INTERVAL_S": "3.0",
            "REELFLOW_RETRY_INITIAL_DELAY_S": "0.5",
            "REELFLOW_RETRY_MAX_DELAY_S": "2.0",
            "REELFLOW_LEASE_S": str(self.lease_s),
            "REELFLOW_RECONCILE_INTERVAL_S": "2",
            "REELFLOW_RECONCILE_GRACE_S": "3",
            "REELFLOW_NOT_FOUND_GRACE_S": "10",
            "REELFLOW_POLL_MAX_AGE_S": str(self.poll_max_age_s),
            # a hung task timed out is followed late as long again, checks a few seconds apart
            "REELFLOW_LATE_FOLLOW_S": str(self.poll_max_age_s),
            "REELFLOW_LATE_FOLLOW_MAX_DELAY_S": "4.0",
            "REELFLOW_DRAIN_TIMEOUT_S": "5",
        }


#: ``--quick``: the harness tested by one end-to-end test, in about a minute
QUICK = ChaosPlan(
    clips=40,
    scenes_per_project=4,
    duration_s=35.0,
    speedup=20.0,
    latency_min_s=20.0,
    latency_max_s=100.0,
    kill_every_min_s=2.0,
    kill_every_max_s=4.0,
    down_min_s=0.3,
    down_max_s=2.0,
    watchers=3,
    forged_webhooks=8,
    poison_messages=3,
    converge_deadline_s=120.0,
    # above a broker restart on a busy machine (20-30 s) plus a lease and a grace
    poll_max_age_s=60.0,
    lease_s=6.0,
)
