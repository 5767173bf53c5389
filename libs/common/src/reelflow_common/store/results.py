"""What :class:`~reelflow_common.store.projects.ProjectStore`'s writes and narrow reads answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from reelflow_common.domain import ClipRequest, ClipStatus
from reelflow_common.messages import Event
from reelflow_common.store.models import ClipState, Lease


@dataclass(frozen=True)
class Change:
    """What a transition did: whether this writer's update applied, and what to publish.

    ``events`` are the writer's own (and a ``project.finished`` it caused) when it
    applied; when it did not, the stored events about the clip, for a re-publish.
    """

    applied: bool
    events: list[Event] = field(default_factory=list)
    #: when an applied ``processing`` change happened and the lease it gave (database clock)
    at: datetime | None = None
    lease_until: datetime | None = None
    #: not applied: Runware took the clip's own task after the clip was cancelled (or failed)
    #: meanwhile, or an earlier task whose attempt had ended so; nobody follows that task
    #: unless the submitting chain does
    given_up: bool = False
    #: applied: our ceiling failed the clip (``timedOut``) and its task stays followed, late,
    #: in ``attempts.<task>`` (:meth:`ProjectStore.time_out`)
    follow: LateFollow | None = None


@dataclass(frozen=True)
class LateFollow:
    """A task the ceiling gave up on, followed on: the lease its chain holds in the task's
    ``attempts`` entry (run out: the attempts reconciler re-arms it), and the end of the
    follow (``Attempt.follow_until``)."""

    lease: Lease
    until: datetime


@dataclass(frozen=True)
class ClipTask:
    """A clip's current task and its status, as a submit chain reads them before a submit it
    may no longer want (``ProjectStore.clip_task``)."""

    task_uuid: str
    status: ClipStatus
    #: whether the clip's ``attempts`` has an entry of the task the chain asked about: only
    #: there can a cancel have moved that task with the clip's charge (and the chain's lease)
    in_attempts: bool = False


@dataclass(frozen=True)
class ClipWithRequest:
    """A clip, its project's model and its scene's request (``ProjectStore.clip_with_request``)."""

    model: str
    clip: ClipState
    #: None for a project stored without its requests
    request: ClipRequest | None
