"""The poll planner interface: given what is known of a task, when to ask Runware next.

The poller asks a :class:`PollPlanner` for every delay it schedules and tells it
about every completion it sees; planners are pure (no I/O) so they can be
evaluated exactly on a sample of latencies, as the benchmark does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reelflow_common.settings import TopologySettings


@dataclass(frozen=True)
class ClipProfile:
    """What a planner may know about a task before asking: its model and request shape."""

    model: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    #: Runware was given a webhookURL: polling is only the safety net
    webhooks: bool = False


class PollPlanner(Protocol):
    """Chooses check times. ``elapsed_s`` is measured from submission, on the database's clock."""

    def first_check_s(self, profile: ClipProfile) -> float:
        """Seconds after submission of the first ``getResponse``."""
        ...

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        """Seconds from now to the next check of a task still processing ``elapsed_s`` in."""
        ...

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        """A task of this profile was seen finished ``elapsed_s`` after submission.

        ``since_s``: when it was last seen processing (the previous check; 0 for the
        first), so the finish lies in ``(since_s, elapsed_s]``, and ``since_progress``
        the progress Runware reported then. ``since_s=None``: ``elapsed_s`` is the
        finish itself (a webhook).
        """
        ...


@dataclass(frozen=True)
class FixedLadderPlanner:
    """The first landing's ladder: ``initial``, then ``backoff`` times longer each check, capped."""

    initial_s: float
    backoff: float
    cap_s: float

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> FixedLadderPlanner:
        """The poll schedule the settings describe (the same numbers as the poll ladder)."""
        return cls(
            initial_s=settings.poll_initial_delay_s,
            backoff=settings.poll_backoff,
            cap_s=settings.poll_max_delay_s,
        )

    def first_check_s(self, profile: ClipProfile) -> float:
        return self.initial_s

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        # The delay that follows the one that ended at ``elapsed_s``: grow it step by
        # step from ``initial`` (no ``backoff**n``, which overflows for long-lived clips).
        delay, waited = self.initial_s, self.initial_s
        while waited < elapsed_s and delay < self.cap_s and self.backoff > 1.0:
            delay = min(self.cap_s, delay * self.backoff)
            waited += delay
        if waited < elapsed_s:
            return self.cap_s
        return min(self.cap_s, delay * self.backoff) if self.backoff > 1.0 else delay

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        return None
