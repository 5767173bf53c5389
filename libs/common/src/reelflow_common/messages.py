"""Every message that travels over RabbitMQ, as a frozen pydantic model.

Commands are imperative and have exactly one consumer (``SubmitClip``,
``CheckClip`` or several in one ``CheckClips``, ``CheckHintedTasks``, ``StoreVideo``);
events are past tense and fan out (``ClipUpdated``, ``ProjectFinished``, ``ClipStored``,
``AttemptSucceeded``). Each message carries its own envelope fields: ``message_id``,
``correlation_id`` (the HTTP request that started the chain), ``occurred_at`` and
``schema_version``.

Commands carry what their consumer needs, so that handling one reads nothing
from the database on the way that matters: a ``SubmitClip`` holds the request
to send, a ``CheckClip`` the lease of the chain it belongs to.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from reelflow_common.accounting.ledger import Charge
from reelflow_common.domain import ClipRequest, ClipStatus, CostTotals, Counts, ProjectStatus
from reelflow_common.money import Usd
from reelflow_common.topology import (
    CLIP_ATTEMPT_STORED,
    CLIP_ATTEMPT_SUCCEEDED,
    CLIP_STORED,
    CLIP_UPDATED,
    HEADER_CORRELATION_ID,
    HEADER_PROJECT_ID,
    HEADER_TASK_UUID,
    HEADER_TENANT_ID,
    PROJECT_FINISHED,
)

#: task UUIDs one webhook hint may name; Runware sends one task per delivery
MAX_HINTED_TASKS = 100
#: the most checks one ``CheckClips`` carries
MAX_CHECKS_TOGETHER = 32


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _canonical_uuid(value: str) -> str:
    # UUID() also accepts braces, URNs and missing hyphens; the canonical form is what we store.
    return str(uuid.UUID(value))


#: a task UUID as reelflow writes them (lowercase, hyphenated)
TaskUuid = Annotated[str, Field(min_length=32, max_length=45), AfterValidator(_canonical_uuid)]


class Message(BaseModel):
    """Envelope fields shared by every message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    message_id: str = Field(default_factory=_new_id)
    correlation_id: str | None = None
    occurred_at: datetime = Field(default_factory=_now)

    #: the AMQP ``type`` property; consumers check it before parsing
    message_type: ClassVar[str]

    def following(self, **changes: Any) -> Self:
        """A fresh message (new id and time) with ``changes``: the next step of a chain is a
        new command, not a redelivery of this one."""
        return self.model_copy(update={"message_id": _new_id(), "occurred_at": _now(), **changes})

    def headers(self) -> dict[str, str]:
        """Correlation ids that travel as AMQP headers and are bound into log lines."""
        found: dict[str, str] = {}
        for header, value in (
            (HEADER_PROJECT_ID, getattr(self, "project_id", None)),
            (HEADER_TENANT_ID, getattr(self, "tenant_id", None)),
            (HEADER_TASK_UUID, getattr(self, "task_uuid", None)),
            (HEADER_CORRELATION_ID, self.correlation_id),
        ):
            if value:
                found[header] = str(value)
        return found


# --- commands -----------------------------------------------------------------


class SubmitClip(Message):
    """Send one clip to Runware (``videoInference``, async delivery), as attempt ``attempt``.

    ``token`` names the chain this message belongs to: the clip's lease holds the
    token of its one live chain, and only that chain may record ``processing``.
    """

    message_type: ClassVar[str] = "submit_clip"
    project_id: str
    tenant_id: str
    scene_index: int = Field(ge=0)
    task_uuid: str
    token: str
    lease_until: datetime
    model: str
    request: ClipRequest
    attempt: int = Field(default=1, ge=1)
    #: how many of those submits Runware gave no word on (an outage: no answer, or 408, 429
    #: or 5xx): they set the retry's delay like any other but spend no ``submit_max_attempts``
    outages: int = Field(default=0, ge=0)
    #: when this chain first called Runware (database clock); the visibility grace counts from it
    first_attempt_at: datetime | None = None
    #: when this chain's latest submit that may have reached Runware unseen (no answer, or
    #: a retryable error) ended; the visibility grace counts from it (None: from
    #: ``first_attempt_at``, as before this field)
    last_ambiguous_at: datetime | None = None
    #: set once the submits are over: the error the clip fails with unless Runware turns out
    #: to hold the task; such a message only asks Runware (``getResponse``)
    final_error: dict[str, str] | None = None
    #: what the clip holds on its tenant's ledger (a tenant with a budget): the submitter
    #: checks the budget before the first submit
    charge: Charge | None = None
    #: the clip had earlier tasks (a retry's task): a late video of one of them may replace
    #: this task while it waits, so the submitter reads the clip before every submit, its
    #: first included (``ProjectStore.clip_task``); a clip's first task has no such task to
    #: fear: the first handling of its first submit within ``submit_read_after_s`` of its
    #: queueing reads nothing (``reelflow_submitter.service.reads_before_submit``)
    after_earlier_tasks: bool = False
    #: when the clip's task was queued (database clock): a first submit of a message older
    #: than ``submit_read_after_s`` (a clip that waited in its tenant's lane) reads the clip
    #: first, since it may have been cancelled meanwhile (None: a message from before this
    #: field; its ``occurred_at`` stands in)
    queued_at: datetime | None = None
    #: the project's number of scenes: a project of one has its clip's end and its own
    #: finish written in one update (None: a message from before this field, finished apart)
    scene_count: int | None = Field(default=None, ge=1)


class CheckClip(Message):
    """Ask Runware for the state of one task (``getResponse``), check number ``check``."""

    message_type: ClassVar[str] = "check_clip"
    project_id: str
    scene_index: int = Field(ge=0)
    task_uuid: str
    token: str
    lease_until: datetime
    submitted_at: datetime
    #: when the current watch began (database clock); the ceiling counts from it
    watched_since: datetime
    model: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    webhooks: bool = False
    check: int = Field(default=1, ge=1)
    #: the last error a check of this chain met, shown if the clip times out
    last_error: str | None = None
    #: when a check of this chain last saw the task processing (database clock), and the
    #: progress Runware reported then: the poll planner learns that a task finished
    #: between that check and the one that sees it done (None: since submission)
    seen_processing_at: datetime | None = None
    seen_progress: int | None = None
    #: when this check is due (database clock), if its wait queue's TTL fell short of its
    #: delay: a poller that takes it earlier sends it on for the rest, without asking
    #: Runware (``reelflow_common.polling.delivery``); None: due on arrival
    due_at: datetime | None = None
    #: the project's number of scenes: a project of one has its clip's end and its own
    #: finish written in one update (None: a message from before this field, finished apart)
    scene_count: int | None = Field(default=None, ge=1)
    #: a late follow (database clock): the chain checks its clip's own task after our ceiling
    #: failed the clip (``timedOut``), under the lease in ``attempts.<task>``, up to this
    #: time instead of ``poll_max_age_s`` after ``watched_since``, on the late follow's slow
    #: ladder (``check`` counts its checks). Left out of the message while unset: a poller of
    #: the release before refuses the field, and only a late follow carries it
    follow_until: datetime | None = Field(default=None, exclude_if=lambda value: value is None)


class CheckClips(Message):
    """Several ``CheckClip`` that travel together: sent to the same wait queue at the same
    moment (``reelflow_common.polling.delivery.CheckBundles``). Each is handled as if it had
    come alone; only those that fail go again, in a ``CheckClips`` of their own."""

    message_type: ClassVar[str] = "check_clips"
    checks: list[CheckClip] = Field(min_length=1, max_length=MAX_CHECKS_TOGETHER)


class CheckHintedTasks(Message):
    """A webhook named these tasks: ask Runware about them now. Never the body's results."""

    message_type: ClassVar[str] = "check_hinted_tasks"
    project_id: str
    scene_index: int | None = Field(default=None, ge=0)
    task_uuids: list[TaskUuid] = Field(min_length=1, max_length=MAX_HINTED_TASKS)


class StoreVideo(Message):
    """Copy a task's video from Runware's URL to reelflow's own storage, try ``attempt``.

    Sent when a clip becomes a success, or a task in its ``attempts`` delivers a video (billed
    too); ``task_uuid`` says which, and the copy is recorded where that task's video is. The
    copy never holds up the clip's status.
    """

    message_type: ClassVar[str] = "store_video"
    project_id: str
    scene_index: int = Field(ge=0)
    task_uuid: str
    video_url: str
    attempt: int = Field(default=1, ge=1)


# --- events -------------------------------------------------------------------


# --- signals between submitter replicas (fanout, per-replica queues, best effort) -------


class LaneOpened(Message):
    """A tenant's submit lane exists: every submitter replica should consume it."""

    message_type: ClassVar[str] = "lane_opened"
    tenant_id: str


class RunwareThrottled(Message):
    """Runware said 429: no replica submits before ``until`` (the database's clock)."""

    message_type: ClassVar[str] = "runware_throttled"
    until: datetime


SIGNAL_TYPES: dict[str, type[LaneOpened] | type[RunwareThrottled]] = {
    LaneOpened.message_type: LaneOpened,
    RunwareThrottled.message_type: RunwareThrottled,
}


class AttemptView(BaseModel):
    """An earlier attempt of a clip (a task it no longer stands for), as frontends see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_uuid: str
    status: ClipStatus
    video_url: str | None = None
    cost: Usd | None = None
    error: dict[str, str] | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    #: reelflow's own signed URL of the attempt's video, once copied (REST and snapshots)
    stored_url: str | None = None


class ClipView(BaseModel):
    """A clip as frontends see it: REST ``results`` items, snapshots, and ``clip.updated``.

    An event's clip is the clip as a read at its ``seq`` shows it, whole (a field it does
    not carry, the clip does not have), but for ``attempts``: an event carries them only
    when its change moved a task into or out of them (a retry's new task, a clip taking
    another task's video), then all of them (``[]``: none); an event without them left them
    as they were.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_uuid: str
    scene_index: int
    status: ClipStatus
    video_url: str | None = None
    cost: Usd | None = None
    error: dict[str, str] | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    #: reelflow's own signed URL of the video, once copied (``video_url`` stays Runware's)
    stored_url: str | None = None
    #: Runware's estimate (0-99) while the clip is processing, as last stored
    progress: int | None = None
    #: why a queued clip is not at Runware yet: Runware is unavailable (its last answer's
    #: code and message); the clip is submitted once Runware is back
    waiting: dict[str, str] | None = None
    #: the scene's earlier tasks, oldest first (see above for events)
    attempts: list[AttemptView] | None = None


class ClipUpdated(Message):
    """A clip's public status changed; ``seq`` is the project's sequence after the change."""

    message_type: ClassVar[str] = CLIP_UPDATED
    project_id: str
    tenant_id: str
    seq: int
    clip: ClipView
    counts: Counts
    #: the project's ``cost`` after this change, as a read at ``seq`` shows it (None: published
    #: by a writer of the release before, during an upgrade)
    cost: CostTotals | None = None
    #: on a retry, the failed task this clip replaces (same scene), now in the clip's
    #: ``attempts``; the project status's ``clips`` drops that key
    replaces_task_uuid: str | None = None
    #: True when the clip took a video whose cost the project's ``cost`` already holds (a
    #: retry taking a late video a ``clip.attempt_succeeded`` told): the change added nothing
    cost_counted: bool | None = None

    @property
    def task_uuid(self) -> str:
        return self.clip.task_uuid


class ProjectFinished(Message):
    """The last clip of a project became terminal. Emitted exactly once per finish."""

    message_type: ClassVar[str] = PROJECT_FINISHED
    project_id: str
    tenant_id: str
    seq: int
    status: ProjectStatus
    counts: Counts
    #: the project's ``cost`` after this change, as a read at ``seq`` shows it (None: published
    #: by a writer of the release before, during an upgrade)
    cost: CostTotals | None = None


class ClipStored(Message):
    """A successful clip's video is in reelflow's own storage: play it from ``stored_url``.

    The clip's status does not change (it was a success already); ``seq`` moves on
    so that clients receive it in order. ``stored_url`` is signed and expires after
    ``video_url_ttl_s``; REST answers and snapshots always carry a fresh one.
    """

    message_type: ClassVar[str] = CLIP_STORED
    project_id: str
    tenant_id: str
    seq: int
    counts: Counts
    #: the project's ``cost`` after this change, as a read at ``seq`` shows it (None: published
    #: by a writer of the release before, during an upgrade)
    cost: CostTotals | None = None
    scene_index: int
    task_uuid: str
    stored_url: str
    size_bytes: int


class AttemptStored(Message):
    """A video of a task the clip does not stand for (one of its ``attempts``) is in reelflow's
    own storage: that attempt's ``stored_url``.

    Like :class:`ClipStored`, for the entry of ``task_uuid`` in the scene's ``attempts``: the
    clip, its status and the counts do not change. A type of its own, so that a client that
    sets a clip's ``stored_url`` on every ``clip.stored`` never plays another task's video
    as the clip's.
    """

    message_type: ClassVar[str] = CLIP_ATTEMPT_STORED
    project_id: str
    tenant_id: str
    seq: int
    counts: Counts
    #: the project's ``cost`` after this change, as a read at ``seq`` shows it (None: published
    #: by a writer of the release before, during an upgrade)
    cost: CostTotals | None = None
    scene_index: int
    task_uuid: str
    stored_url: str
    size_bytes: int


class AttemptSucceeded(Message):
    """A task the clip does not stand for delivered a video after all: Runware billed it.

    An earlier task of a retried clip, a task replaced by an earlier one's video, or
    the clip's own task after the clip was given up on (``timedOut``). The clip's
    status and the counts do not change (a terminal clip never does, and the project
    does not finish again); ``attempt`` is the task as its ``attempts`` entry now
    says, with its ``cost``, which the project's ``cost`` now includes. A failed clip
    with such a video takes it, without buying anything, when it is retried.
    """

    message_type: ClassVar[str] = CLIP_ATTEMPT_SUCCEEDED
    project_id: str
    tenant_id: str
    seq: int
    counts: Counts
    #: the project's ``cost`` after this change, as a read at ``seq`` shows it (None: published
    #: by a writer of the release before, during an upgrade)
    cost: CostTotals | None = None
    scene_index: int
    attempt: AttemptView


Event = ClipUpdated | ProjectFinished | ClipStored | AttemptSucceeded | AttemptStored
_EventType = (
    type[ClipUpdated]
    | type[ProjectFinished]
    | type[ClipStored]
    | type[AttemptSucceeded]
    | type[AttemptStored]
)

#: the one table of event types: AMQP ``type`` (and stored ``type``) -> model
EVENT_TYPES: dict[str, _EventType] = {
    ClipUpdated.message_type: ClipUpdated,
    ProjectFinished.message_type: ProjectFinished,
    ClipStored.message_type: ClipStored,
    AttemptSucceeded.message_type: AttemptSucceeded,
    AttemptStored.message_type: AttemptStored,
}
EVENT_CLASSES = tuple(EVENT_TYPES.values())


def parse_event(message_type: str | None, body: bytes | str | dict[str, Any]) -> Event | None:
    """The event of that type in ``body``; None for a type that is no event.

    Raises pydantic's ``ValidationError`` for a body that is not that event.
    """
    model = EVENT_TYPES.get(message_type or "")
    if model is None:
        return None
    if isinstance(body, dict):
        return model.model_validate(body)
    return model.model_validate_json(body)
