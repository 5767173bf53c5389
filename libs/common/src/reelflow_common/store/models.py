"""What the project store takes and gives: frozen models, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import (
    GIVEN_UP_CLIP_STATUSES,
    ClipRequest,
    ClipStatus,
    CostTotals,
    Counts,
    ProjectStatus,
    final_project_status,
)
from reelflow_common.messages import AttemptView, ClipUpdated, ClipView, Event
from reelflow_common.store.timefmt import rfc3339

if TYPE_CHECKING:
    from reelflow_common.storage.links import VideoLinks


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewProject(_Frozen):
    """A project to create; ``request_hash`` tells a replay from a conflicting reuse of a key."""

    tenant_id: str
    title: str
    model: str
    scenes: list[ClipRequest] = Field(min_length=1)
    idempotency_key: str | None = None
    request_hash: str | None = None
    correlation_id: str | None = None
    #: each scene's reservation on the tenant's ledger (tenants with a budget or in-flight limit)
    charges: list[Charge] | None = None


class Lease(_Frozen):
    """Who follows an open clip: the token of its one live chain, until when (database clock)."""

    token: str
    until: datetime


class VideoAsset(_Frozen):
    """reelflow's own copy of a task's video (a clip's, or an attempt's): stored, or given up
    on (``failed``)."""

    status: Literal["stored", "failed"]
    key: str
    size_bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    stored_at: datetime | None = None
    #: why the last copy failed, and how many were tried (``failed`` only)
    error: dict[str, str] | None = None
    attempts: int | None = None
    failed_at: datetime | None = None


class Attempt(_Frozen):
    """A task of a clip that the clip does not stand for (or no longer stands for by its video).

    An earlier task, kept when a retry gave the clip a new one or an earlier task's
    video replaced it; or, for a clip given up on (cancelled, failed), its own task (under
    the clip's own task UUID): followed by a chain while Runware may still bill it (a
    cancelled processing clip, a task Runware took after the cancel), or its video that
    came after all.
    """

    status: ClipStatus
    video_url: str | None = None
    video_uuid: str | None = None
    cost: float | None = None
    error: dict[str, str] | None = None
    queued_at: datetime | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    #: when the task's watch began (the clip's, as it left the task; or when a given-up task
    #: was found at Runware): a re-armed chain's ceiling (``poll_max_age_s``) counts from here
    watched_since: datetime | None = None
    #: what the task held on the tenant's ledger: its end is settled on this charge
    charge: Charge | None = None
    #: its video came after the task had been given up on (its reservation was freed)
    late: bool = False
    #: the chain still following the task until its end is recorded: one an earlier task's
    #: video replaced, or one given up on that Runware may still bill
    lease: Lease | None = None
    #: the end of its follow after it was given up on (Runware's, or our ceiling's) was
    #: recorded here: no chain follows it again. Any end of an attempt not given up on before
    #: leaves it unset — one we decided (``taskReplaced``, not found, our ceiling) or
    #: Runware's own: a chain that finds the task at Runware after all follows it (after
    #: Runware's own end, harmless: at most one more follow, whose end is then recorded).
    end_recorded: bool = False
    #: reelflow's copy of the attempt's video (one with a video only), as a clip's ``asset``
    asset: VideoAsset | None = None
    #: the clip's own task after our ceiling failed the clip (``timedOut``: Runware never said
    #: it failed), followed late up to here (``late_follow_s`` after the ceiling) instead of
    #: ``poll_max_age_s`` from its watch; with the clip's charge, which it holds in flight
    #: until that follow's end is recorded (``end_recorded``)
    follow_until: datetime | None = None

    def watch_start(self) -> datetime | None:
        """When the task's watch began (``watched_since``, else its submit, else its queueing):
        a re-armed chain's ceiling counts from here."""
        return self.watched_since or self.submitted_at or self.queued_at

    @property
    def followed_late(self) -> bool:
        """Whether this is a late follow (:attr:`follow_until`) whose end is not recorded yet."""
        return self.follow_until is not None and not self.end_recorded

    @property
    def stored_key(self) -> str | None:
        """The storage key of this attempt's video, once reelflow holds a copy."""
        if self.status is ClipStatus.SUCCESS and self.asset and self.asset.status == "stored":
            return self.asset.key
        return None

    def view(self, task_uuid: str, *, links: VideoLinks | None = None) -> AttemptView:
        """The attempt as frontends see it; with ``links``, a fresh signed URL of its copy."""
        stored_url = None
        if links is not None and self.stored_key is not None:
            stored_url = links.url(self.stored_key)
        return AttemptView(
            task_uuid=task_uuid,
            status=self.status,
            video_url=self.video_url,
            cost=self.cost,
            error=self.error,
            submitted_at=self.submitted_at,
            completed_at=self.completed_at,
            stored_url=stored_url,
        )


class TaskVideo(_Frozen):
    """A video one task of a clip delivered: the clip's own (``of_attempt`` False) or one in its
    ``attempts``, with reelflow's copy of it (None: not stored nor given up on yet)."""

    scene_index: int
    task_uuid: str
    video_url: str
    completed_at: datetime | None = None
    asset: VideoAsset | None = None
    of_attempt: bool = False


class ClipState(_Frozen):
    """One scene's clip: its current task, what became of it, its lease and its past tasks."""

    scene_index: int
    task_uuid: str
    status: ClipStatus
    video_url: str | None = None
    video_uuid: str | None = None
    cost: float | None = None
    error: dict[str, str] | None = None
    queued_at: datetime | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    #: when the current watch began, as stored: only where no other field says it (a clip
    #: watched again after ``timedOut``); :meth:`watch_start` says it for every clip
    watched_since: datetime | None = None
    lease: Lease | None = None
    #: Runware's progress of the current task (0-99), stored now and then while processing
    progress: int | None = None
    #: why a queued clip is not at Runware yet: the outage its submits meet (code, message)
    waiting: dict[str, str] | None = None
    #: what the clip's current task holds on the tenant's ledger (None: the tenant has none)
    charge: Charge | None = None
    #: the current task's video came after the task had been given up on (an earlier task
    #: whose video came while a retry ran, or a retry that took a late video)
    late: bool = False
    #: earlier tasks of this scene, by task UUID
    attempts: dict[str, Attempt] = Field(default_factory=dict)
    #: reelflow's copy of the video (a success only; copies are off: always None)
    asset: VideoAsset | None = None

    def view(self, *, with_attempts: bool = True, links: VideoLinks | None = None) -> ClipView:
        """The clip as frontends see it; with ``links``, a fresh signed URL of the stored video."""
        attempts = None
        if with_attempts and self.attempts:
            attempts = [
                attempt.view(task_uuid, links=links)
                for task_uuid, attempt in self.earlier_attempts()
                # The clip's own task followed after it was given up on: the clip says it all
                # until a video comes.
                if task_uuid != self.task_uuid or attempt.status is ClipStatus.SUCCESS
            ]
            attempts = attempts or None
        stored_url = None
        if links is not None and self.stored_key is not None:
            stored_url = links.url(self.stored_key)
        return ClipView(
            task_uuid=self.task_uuid,
            scene_index=self.scene_index,
            status=self.status,
            video_url=self.video_url,
            cost=self.cost,
            error=self.error,
            submitted_at=self.submitted_at,
            completed_at=self.completed_at,
            stored_url=stored_url,
            progress=self.progress if self.status is ClipStatus.PROCESSING else None,
            waiting=self.waiting if self.status is ClipStatus.QUEUED else None,
            attempts=attempts,
        )

    @property
    def stored_key(self) -> str | None:
        """The storage key of this clip's video, once reelflow holds a copy."""
        if self.status is ClipStatus.SUCCESS and self.asset and self.asset.status == "stored":
            return self.asset.key
        return None

    def watch_start(self) -> datetime | None:
        """When the current watch began: the ceiling (``poll_max_age_s``) counts from here.

        Derived, never stored: what an attempt copies of the clip (:meth:`as_attempt`) is
        the stored ``watched_since`` only, so an entry carries that field (which the release
        before refuses) only where a rewatch set it.
        """
        return self.watched_since or self.submitted_at or self.queued_at

    def videos(self) -> list[TaskVideo]:
        """Every video a task of this clip delivered (Runware billed each): the clip's own, if
        it is a success, then each attempt's, oldest first. Each gets a copy of its own."""
        found: list[TaskVideo] = []
        if self.status is ClipStatus.SUCCESS and self.video_url:
            found.append(
                TaskVideo(
                    scene_index=self.scene_index,
                    task_uuid=self.task_uuid,
                    video_url=self.video_url,
                    completed_at=self.completed_at,
                    asset=self.asset,
                    of_attempt=False,
                )
            )
        for task_uuid, attempt in self.earlier_attempts():
            if attempt.status is ClipStatus.SUCCESS and attempt.video_url:
                found.append(
                    TaskVideo(
                        scene_index=self.scene_index,
                        task_uuid=task_uuid,
                        video_url=attempt.video_url,
                        completed_at=attempt.completed_at,
                        asset=attempt.asset,
                        of_attempt=True,
                    )
                )
        return found

    def earlier_attempts(self) -> list[tuple[str, Attempt]]:
        """The earlier tasks as (task UUID, attempt), oldest first."""
        return sorted(self.attempts.items(), key=_attempt_order)

    def as_attempt(self) -> Attempt:
        """This clip's current task, as an earlier attempt once a retry replaces it."""
        return Attempt(
            status=self.status,
            video_url=self.video_url,
            video_uuid=self.video_uuid,
            cost=self.cost,
            error=self.error,
            queued_at=self.queued_at,
            submitted_at=self.submitted_at,
            completed_at=self.completed_at,
            watched_since=self.watched_since,
            charge=self.charge,
            late=self.late,
            lease=self.lease,
        )

    def stray_attempt(self, task_uuid: str) -> bool:
        """Whether ``attempts[task_uuid]`` is a stray: a leased entry of this clip's own task
        (without a video) while the clip is not given up on (neither cancelled nor failed),
        so the clip's own chain follows that task (ARCHITECTURE.md, "Upgrades")."""
        attempt = self.attempts.get(task_uuid)
        return (
            task_uuid == self.task_uuid
            and self.status not in GIVEN_UP_CLIP_STATUSES
            and attempt is not None
            and attempt.lease is not None
            and attempt.status is not ClipStatus.SUCCESS
        )

    def holds(self, charge: Charge) -> bool:
        """Whether a task of this clip (its current one, or an earlier one it moved to
        ``attempts``) holds ``charge``: its end settles it, so nobody else may release it."""
        held = [self.charge, *(attempt.charge for attempt in self.attempts.values())]
        return any(found is not None and found.id == charge.id for found in held)

    def moved_charge(self, task_uuid: str) -> bool:
        """Whether the given-up clip's own task ``task_uuid`` holds the clip's charge in
        ``attempts``: the cancel, or our ceiling (a late follow, :attr:`Attempt.follow_until`),
        moved it there with the task Runware may still run (the clip has none left), so that
        task's end settles it, as any task's end does. Not where the clip kept its charge: its
        end freed it (a failed clip whose task was not followed late, or one cancelled by a
        release before this one)."""
        attempt = self.attempts.get(task_uuid)
        return (
            task_uuid == self.task_uuid
            and self.status in GIVEN_UP_CLIP_STATUSES
            and self.charge is None
            and attempt is not None
            and attempt.charge is not None
        )

    def charge_in_flight(self, task_uuid: str) -> bool:
        """Whether the charge moved to ``attempts[task_uuid]`` (:meth:`moved_charge`) is still
        in flight: the task's end is not recorded yet. Until then a cancelled clip's entry says
        ``queued`` or ``processing`` (a queued clip's task, its submit chain's word to come:
        :meth:`awaits_submit_word`) or ``cancelled`` (a processing clip's, followed), and a
        timed-out clip's is its late follow (``failed`` as the clip, :attr:`Attempt.
        followed_late`); any end makes it ``success`` or ``failed`` (the end of a late follow
        is recorded: ``end_recorded``). A cancelled clip's ``failed`` entry followed again
        later (a chain found the task at Runware after all) holds nothing: its end freed the
        charge."""
        attempt = self.attempts.get(task_uuid)
        return (
            self.moved_charge(task_uuid)
            and attempt is not None
            and (attempt.status in _HELD_STATUSES or attempt.follow_until is not None)
            and not attempt.end_recorded
        )

    def awaits_submit_word(self, task_uuid: str) -> bool:
        """Whether the cancel moved this clip's queued task ``task_uuid`` to ``attempts``, where
        it waits for its submit chain's word (status ``queued``, the chain's lease, the
        charge): the chain marks it ``processing`` when Runware took it
        (``earlier_task_submitted``, as for a task an earlier video replaced), or ends it
        ``failed`` when it never sent it or Runware does not have it past the grace."""
        attempt = self.attempts.get(task_uuid)
        return (
            task_uuid == self.task_uuid
            and self.status is ClipStatus.CANCELLED
            and attempt is not None
            and attempt.status is ClipStatus.QUEUED
        )

    def runs_at_runware(self) -> Attempt | None:
        """This failed clip's own task, given up on and then found at Runware (a chain of it
        got it there after the clip failed: ``follow_given_up``), or followed late after our
        ceiling failed the clip (:attr:`Attempt.follow_until`), still followed: its lease
        held, its end not recorded. Runware runs it and will bill it: a retry watches it
        again rather than buy another. Such a follow says ``failed`` (as the clip) with the
        submit it found (or the clip's); any other entry (a stray an older release left) is
        not one."""
        attempt = self.attempts.get(self.task_uuid)
        if self.status is not ClipStatus.FAILED or attempt is None:
            return None
        followed = (
            attempt.status is ClipStatus.FAILED
            and attempt.submitted_at is not None
            and attempt.lease is not None
            and not attempt.end_recorded
        )
        return attempt if followed else None

    def late_video(self) -> tuple[str, Attempt] | None:
        """A video of one of this failed clip's tasks that came after it was given up on."""
        if self.status is not ClipStatus.FAILED:
            return None
        videos = [item for item in self.earlier_attempts() if item[1].status is ClipStatus.SUCCESS]
        return videos[0] if videos else None

    def seed_value(self) -> str:
        """The clip in the seed's ``clips`` column: its URL, ``"pending"`` or ``"failed"``.

        The seed had no cancellation; a cancelled clip will never have a video, so it
        reads as ``"failed"`` there (its ``results`` entry says ``cancelled``).
        """
        if self.status is ClipStatus.SUCCESS and self.video_url:
            return self.video_url
        if self.status.is_terminal:
            return "failed"
        return "pending"


#: what an attempt holding a charge a cancel moved there says until its task's end is recorded
_HELD_STATUSES = (ClipStatus.QUEUED, ClipStatus.PROCESSING, ClipStatus.CANCELLED)


def _attempt_order(item: tuple[str, Attempt]) -> tuple[float, str]:
    _task_uuid, attempt = item
    when = attempt.queued_at or attempt.submitted_at
    return (when.timestamp() if when else 0.0, item[0])


class Project(_Frozen):
    """A project as stored, without its event log; ``clips`` ordered by scene."""

    id: str
    tenant_id: str
    title: str
    model: str
    status: ProjectStatus
    seq: int
    counts: Counts
    cost: CostTotals = CostTotals()
    clips: list[ClipState]
    #: the request of each scene; only when read for a (re-)submission
    requests: list[ClipRequest] | None = None
    correlation_id: str | None = None
    due_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    def clip(self, scene_index: int) -> ClipState | None:
        if 0 <= scene_index < len(self.clips):
            return self.clips[scene_index]
        return None

    def clip_of_task(self, task_uuid: str) -> ClipState | None:
        """The clip whose current task is ``task_uuid``."""
        return next((clip for clip in self.clips if clip.task_uuid == task_uuid), None)

    @property
    def shown_status(self) -> ProjectStatus:
        """The status a reader sees: decided by the counts once no clip is pending.

        The finisher stores it in an update of its own just after the last clip's; a
        read in between (or after a crash in between, until the reconciler finishes the
        project) would otherwise show a project with nothing pending as generating.
        """
        if self.status is ProjectStatus.GENERATING and self.counts.pending == 0:
            return final_project_status(self.counts)
        return self.status

    def public_status(
        self, *, include_results: bool = True, links: VideoLinks | None = None
    ) -> ProjectStatusView:
        """The project status of the public API; its first fields are the seed's response.

        ``failed`` counts cancelled clips too, as the seed's ``clips`` map shows them,
        so ``completed + pending + failed == total_clips`` holds as it did in the seed.
        ``clips`` is keyed by each scene's current task; a retried scene's earlier
        tasks are in its ``results`` entry under ``attempts``. With ``links``, each
        result whose video reelflow holds has a fresh ``stored_url``.
        """
        counts = self.counts
        return ProjectStatusView(
            project_id=self.id,
            total_clips=counts.total_clips,
            completed=counts.completed,
            pending=counts.pending,
            failed=counts.failed + counts.cancelled,
            all_complete=counts.pending == 0,
            clips={clip.task_uuid: clip.seed_value() for clip in self.clips},
            cancelled=counts.cancelled,
            status=self.shown_status,
            title=self.title,
            cost=self.cost,
            results=[clip.view(links=links) for clip in self.clips] if include_results else None,
            created_at=rfc3339(self.created_at),
            updated_at=rfc3339(self.updated_at),
            seq=self.seq,
        )


_TASK = "9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f"
_TASK_2 = "4e2a6b8c-1d3f-4a5b-9c7d-2e4f6a8b0c1d"
_VIDEO = "https://vm.runware.ai/video/ws/5/vi/9d1c2f0e.mp4"


class ProjectStatusView(BaseModel):
    """A project's status as the API answers it; the fields up to ``clips`` are the prototype's.

    Written as JSON by :meth:`wire`: ``results`` (and every unset field of a
    clip) is left out rather than ``null``.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "success": True,
                    "project_id": "3f6c1a2e-8b4d-4e7a-9c1f-5d2b7e0a6c48",
                    "total_clips": 2,
                    "completed": 1,
                    "pending": 1,
                    "failed": 0,
                    "all_complete": False,
                    "clips": {_TASK: _VIDEO, _TASK_2: "pending"},
                    "cancelled": 0,
                    "status": "generating",
                    "title": "Trip to Lisbon",
                    "cost": {"usd": 0.4, "known": 1, "unknown": 0},
                    "results": [
                        {
                            "task_uuid": _TASK,
                            "scene_index": 0,
                            "status": "success",
                            "video_url": _VIDEO,
                            "cost": 0.4,
                            "submitted_at": "2026-12-01T10:00:00.123000Z",
                            "completed_at": "2026-12-01T10:01:30.456000Z",
                        },
                        {
                            "task_uuid": _TASK_2,
                            "scene_index": 1,
                            "status": "processing",
                            "submitted_at": "2026-12-01T10:00:00.125000Z",
                        },
                    ],
                    "created_at": "2026-12-01T10:00:00.100000Z",
                    "updated_at": "2026-12-01T10:01:30.456000Z",
                    "seq": 3,
                }
            ]
        },
    )

    success: Literal[True] = True
    project_id: str
    total_clips: int = Field(ge=0)
    completed: int = Field(ge=0, description="clips with a video")
    pending: int = Field(ge=0, description="clips not yet terminal (queued or processing)")
    failed: int = Field(ge=0, description="failed and cancelled clips")
    all_complete: bool = Field(description="no clip is pending")
    clips: dict[str, str] = Field(description='task UUID -> the video URL, "pending" or "failed"')
    # After the prototype's fields (up to clips), left as they were: failed - cancelled clips
    # are the failed ones.
    cancelled: int = Field(
        default=0, ge=0, description="cancelled clips (counted in failed too, as the prototype's)"
    )
    status: ProjectStatus
    title: str
    cost: CostTotals
    results: list[ClipView] | None = Field(
        default=None,
        description="one entry per scene, in scene order; not in list items",
    )
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})
    seq: int = Field(
        ge=0,
        description="the seq of the project's last event this status includes: an event at or"
        " below it changes nothing here; follow it over WebSocket with after_seq=seq",
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object sent to clients (REST and WebSocket snapshots)."""
        return self.model_dump(mode="json", exclude_none=True)

    def wire_json(self) -> bytes:
        """:meth:`wire` as JSON text, in one pass (no dict for ``json.dumps`` to walk again)."""
        return self.model_dump_json(exclude_none=True).encode()


class SceneView(BaseModel):
    """What one scene asked for, as the project was created: the defaults it was given filled in
    (a duration, width and height it did not name are the ones the API applied)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scene_index: int = Field(ge=0, description="the scene's clip in `results` has this index")
    prompt: str
    negative_prompt: str | None = Field(default=None, description="absent when none was given")
    duration: float = Field(description="seconds")
    width: int = Field(description="pixels")
    height: int = Field(description="pixels")
    seed: int | None = Field(default=None, description="absent when none was given")
    fps: int | None = Field(default=None, description="absent when none was given")


class ProjectScenesView(BaseModel):
    """``GET /v1/projects/{project_id}/scenes``: what the project asked for, which never changes
    after it is created (the status, :class:`ProjectStatusView`, says how it is going).

    Written as JSON by :meth:`wire_json`: a member not given is left out rather than ``null``.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "project_id": "3f6c1a2e-8b4d-4e7a-9c1f-5d2b7e0a6c48",
                    "title": "Trip to Lisbon",
                    "model": "google:3@3",
                    "scenes": [
                        {
                            "scene_index": 0,
                            "prompt": "tram climbing a steep street at dawn",
                            "negative_prompt": "blurry",
                            "duration": 4.0,
                            "width": 1280,
                            "height": 720,
                            "seed": 42,
                        },
                        {
                            "scene_index": 1,
                            "prompt": "sunset over the river",
                            "duration": 4.0,
                            "width": 1280,
                            "height": 720,
                        },
                    ],
                }
            ]
        },
    )

    project_id: str
    title: str
    model: str = Field(description="the Runware model (AIR id) every scene is made with")
    scenes: list[SceneView] = Field(description="one entry per scene, in scene order")

    @classmethod
    def of(
        cls, project_id: str, title: str, model: str, requests: list[ClipRequest]
    ) -> ProjectScenesView:
        """The view of a project's stored requests (``Project.requests``)."""
        return cls(
            project_id=project_id,
            title=title,
            model=model,
            scenes=[
                SceneView(scene_index=index, **request.model_dump())
                for index, request in enumerate(requests)
            ],
        )

    def wire_json(self) -> bytes:
        """The JSON sent: a member not given (a negative prompt, a seed, an fps) is left out."""
        return self.model_dump_json(exclude_none=True).encode()


class CreateResult(_Frozen):
    """The project a create call stands for; ``created`` is False for an idempotent replay."""

    project: Project
    created: bool


class Outcome(_Frozen):
    """A project after an API operation, the events to publish, and the commands it calls for."""

    project: Project
    events: list[Event]
    #: scenes given a new task (retry): their SubmitClip is the caller's to publish
    resubmit: list[int] = Field(default_factory=list)
    #: scenes to watch again under a fresh lease (retry of a timed-out clip): their CheckClip
    rewatch: list[int] = Field(default_factory=list)
    #: scenes left as they were: each try found the clip moved by another writer (a renewed
    #: lease, a submit, a late video) and read it again, a bounded few times. The request
    #: may be sent again: what it did stays done, and these go then (the API answers 503)
    busy: list[int] = Field(default_factory=list)
    #: scenes a cancel cancelled whose task reelflow knows Runware may bill all the same
    #: (``reelflow_common.store.cancel.may_be_billed``): not an upper bound, see there
    may_be_billed: list[int] = Field(default_factory=list)

    @property
    def clips_changed(self) -> int:
        """Clips the operation changed (each change is told by a ``clip.updated``); 0: there
        was nothing to do (no failed clip to retry, nothing unfinished to cancel)."""
        return len({e.clip.scene_index for e in self.events if isinstance(e, ClipUpdated)})


class TaskSucceeded(_Frozen):
    """Runware says the task finished with a video."""

    video_url: str
    video_uuid: str | None = None
    cost: float | None = None


class TaskFailed(_Frozen):
    """The task is over without a video: Runware's failure, or one of ours (``timedOut``)."""

    code: str
    message: str


TaskResult = TaskSucceeded | TaskFailed
