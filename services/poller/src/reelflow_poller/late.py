"""A late follow's checks: the task our ceiling gave up on (its clip failed ``timedOut``: Runware
never said the task failed), followed on by its chain, slowly, under a lease in the clip's
``attempts`` entry of that task until the follow's end (``CheckClip.follow_until``).

:class:`~reelflow_poller.handlers.CheckHandler` makes the check and records any end, as for
every check; here is where the follow starts, and its next check when Runware has not
finished the task yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from reelflow_common import leases
from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.messages import CheckClip
from reelflow_common.store import LateFollow, ProjectStore
from reelflow_common.tracking.policy import Keep, Policy, seconds_between

log = get_logger(__name__)


class SendCheck(Protocol):
    """Sends a check to be made ``delay_s`` from ``now`` (the handler's, bundled or not)."""

    async def __call__(self, check: CheckClip, *, delay_s: float, now: datetime) -> None: ...


class LateChecks:
    """The late follow's checks of one poller, sent with the handler's ``send``."""

    def __init__(
        self, projects: ProjectStore, policy: Policy, *, lease_s: float, send: SendCheck
    ) -> None:
        self._projects = projects
        self._policy = policy
        self._lease_s = lease_s
        self._send = send

    async def start(self, message: CheckClip, follow: LateFollow, now: datetime) -> None:
        """Our ceiling failed the clip and its task is followed on, late, by this chain: its
        first late check, under the follow's lease (in ``attempts``), at the late ladder's
        first rung (within the lease). Should it not be sent, the follow's lease is expired
        (the attempts reconciler re-arms it after its grace) and the message tried again,
        whose ceiling is then a duplicate (the repair path: the follow goes on untouched)."""
        left_s = seconds_between(now, follow.until)
        delay_s = leases.bounded_step_s(self._policy.late_check_s(0, left_s=left_s), self._lease_s)
        first = message.following(
            check=1,
            lease_until=follow.lease.until,
            follow_until=follow.until,
            seen_processing_at=None,
            seen_progress=None,
            due_at=None,
        )
        try:
            await self._send(first, delay_s=delay_s, now=now)
        except TransientError:
            await self._projects.expire_leases(
                message.project_id,
                {message.scene_index: message.token},
                tasks={message.scene_index: message.task_uuid},
            )
            raise
        log.info("clip_late_follow_started", until=follow.until, delay_s=round(delay_s, 3))

    async def follow(
        self, message: CheckClip, decision: Keep, now: datetime, until: datetime
    ) -> None:
        """Runware still runs the task its clip timed out on (or cannot say): the late follow's
        next check, further apart each time (:meth:`Policy.late_check_s`), its lease (in
        ``attempts``, one write) renewed to outlive it whenever it would not. A renewal that
        matches nothing: the follow ended, or a retry gave the task back to its clip, or
        another chain holds it; this chain stops."""
        delay_s = self._policy.late_check_s(message.check, left_s=seconds_between(now, until))
        next_at = now + timedelta(seconds=delay_s)
        lease_until = message.lease_until
        if leases.renewal_due(next_at=next_at, lease_until=lease_until, lease_s=self._lease_s):
            lease_until = leases.outliving(next_at, self._lease_s)
            renewed = await self._projects.renew_attempt_lease(
                message.project_id,
                message.scene_index,
                message.task_uuid,
                token=message.token,
                until_was=message.lease_until,
                until=lease_until,
            )
            if not renewed:
                log.info("clip_late_follow_stale", check=message.check)
                return
        following = message.following(
            check=message.check + 1, lease_until=lease_until, last_error=decision.last_error
        )
        await self._send(following, delay_s=delay_s, now=now)
        log.debug("clip_late_check_scheduled", check=following.check, delay_s=round(delay_s, 3))
