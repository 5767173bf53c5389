"""Runware's rate limit, respected by every submitter replica at once.

A 429 (``rateLimit``) pauses *all* submits of this replica until a time the one
:class:`~reelflow_common.backoff.Backoff` chooses (longer after each 429 in a
row, jittered; the 429s of requests sent before its own pause count as one), and
the replica tells the others (``RunwareThrottled`` on the submitter signal
exchange), which pause until the same moment. So a burst of
429s slows the whole fleet down together instead of every message retrying on
its own schedule. A submit that Runware accepts ends the streak.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

from reelflow_common.backoff import Backoff
from reelflow_common.clock import Clock
from reelflow_common.logging import get_logger
from reelflow_submitter.metrics import RUNWARE_THROTTLES

log = get_logger(__name__)


class RunwareThrottle:
    """Until when no submit may go to Runware; shared with the other replicas by signals."""

    def __init__(self, backoff: Backoff, clock: Clock, rng: random.Random | None = None) -> None:
        self._backoff = backoff
        self._now = clock
        self._rng = rng or random.Random()
        self._streak = 0
        #: the end of the pause this replica's own latest 429 started
        self._own_until: datetime | None = None
        self.paused_until: datetime | None = None

    def remaining_s(self) -> float:
        if self.paused_until is None:
            return 0.0
        return max(0.0, (self.paused_until - self._now()).total_seconds())

    async def wait(self) -> None:
        """Return once submits may go to Runware (at once, unless paused)."""
        # The pause may grow while this sleeps (another 429): look again after each.
        while (remaining := self.remaining_s()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
            await asyncio.sleep(remaining)

    def tripped(self) -> datetime | None:
        """Runware answered 429: pause, longer than the last time; until when (to tell others).

        None while a pause of this replica's own 429 runs: this one answers a request
        sent before it (no submit goes out during a pause), the same moment of overload,
        often the same shared request (``SubmitBatcher``); that pause stays as it is, told
        already. A pause another replica told of does not count: this replica's own 429s
        still lengthen its streak, as each replica's did before requests were shared.
        """
        if self._own_until is not None and self._own_until > self._now():
            return None
        delay_s = self._backoff.delay_s(self._streak, self._rng)
        self._streak += 1
        until = self._now() + timedelta(seconds=delay_s)
        self._own_until = until
        self.pause_until(until)
        RUNWARE_THROTTLES.labels(source="local").inc()
        log.warning("runware_throttled", pause_s=round(delay_s, 3), streak=self._streak)
        return until

    def pause_until(self, until: datetime) -> None:
        """This replica was throttled: no submit before ``until``."""
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until

    def told(self, until: datetime) -> None:
        """Another replica was throttled: no submit before ``until`` here either."""
        if self.paused_until is None or until > self.paused_until:
            RUNWARE_THROTTLES.labels(source="signal").inc()  # not our own signal coming back
            self.pause_until(until)

    def accepted(self) -> None:
        """A submit got through: the next 429 starts the backoff from its first step."""
        self._streak = 0
