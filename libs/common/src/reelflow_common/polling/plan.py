"""The poll planner interface: given what is known of a task, when to ask Runware next.

The poller asks a :class:`PollPlanner` for every delay it schedules and tells it
about every completion it sees; planners are pure (no I/O) so they can be
evaluated exactly on a sample of latencies, as the benchmark does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reelflow_common.backoff import Backoff
from reelflow_common.settings import TopologySettings
from reelflow_common.topology import poll_ladder


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
    """The first landing's plan: every check one step further up ``ladder`` (its
    ``first_s``, then ``factor`` times longer each check, up to ``cap_s``)."""

    ladder: Backoff

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> FixedLadderPlanner:
        """The poll schedule the settings describe: the checks' wait-queue ladder."""
        return cls(poll_ladder(settings))

    def first_check_s(self, profile: ClipProfile) -> float:
        return self.ladder.first_s

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        # The delay after the one that ended at ``elapsed_s``: walk the schedule's delays
        # until they add up to it. Once they stop growing (the cap, or a factor of 1)
        # and still fall short, the check is late: the cap.
        ladder = self.ladder
        attempt, waited = 0, ladder.first_s
        while waited < elapsed_s:
            if ladder.delay_s(attempt) >= ladder.cap_s or ladder.factor == 1.0:
                return ladder.cap_s
            attempt += 1
            waited += ladder.delay_s(attempt)
        return ladder.delay_s(attempt + 1)

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        return None
