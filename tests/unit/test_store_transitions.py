"""The store's transitions, pure: each is one guarded update carrying its own events.

A document is followed through many changes with a few lines of MongoDB's update
semantics (``mongo_like``), so the invariants are checked after every step:
``seq`` grows by the events pushed, ``events[-1]`` has the document's ``seq``, the
counts add up, and a change whose guard fails writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reelflow_common.accounting.ledger import Charge, Settlement
from reelflow_common.domain import ClipRequest, ClipStatus, CostTotals, Counts, ProjectStatus
from reelflow_common.messages import AttemptSucceeded, ClipUpdated, ProjectFinished
from reelflow_common.store import ClipState, Lease, NewProject, TaskFailed, TaskSucceeded
from reelflow_common.store.documents import new_project_document, project_from_document
from reelflow_common.store.errors import UntoldCost
from reelflow_common.store.eventlog import LogHead, materialize
from reelflow_common.store.transitions import (
    cancellation,
    chainleases,
    charges,
    clipmoves,
    follows,
    lateresults,
    markers,
    owing,
    reconciler,
    retries,
)
from reelflow_common.store.transitions.write import Update, Write
from tests.unit.mongo_like import find_one_and_update, matches
from tests.unit.written_before import written_before

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
LOG = 64
CHARGE = {"id": "c1", "usd": 0.65, "day": "2026-12-02", "month": "2026-12"}


def new_doc(scenes: int = 2) -> dict[str, Any]:
    new = NewProject(
        tenant_id="tenant-a",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[ClipRequest(prompt=f"scene {i}") for i in range(scenes)],
        correlation_id="req-1",
    )
    return new_project_document(
        new,
        project_id="p1",
        task_uuids=[f"t{i}" for i in range(scenes)],
        tokens=[f"k{i}" for i in range(scenes)],
        now=T0,
        lease_until=T0 + LEASE,
    )


def step(doc: dict[str, Any], write: Write) -> dict[str, Any]:
    """Apply ``write``, which must match, and check the document's invariants after it."""
    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None, f"guard did not match: {write.filter}"
    assert after["seq"] - doc["seq"] == write.events == len(write.update.get("$push", {}).get(
        "events", {}).get("$each", []))  # fmt: skip
    counts = after["counts"]
    assert (
        counts["completed"] + counts["pending"] + counts["failed"] + counts["cancelled"]
        == (counts["total_clips"])
    )
    pending = sum(c["status"] in ("queued", "processing") for c in after["clips"].values())
    assert pending == counts["pending"]
    if after["events"]:
        # Every event numbered by its position: the last one is the document's seq.
        events = materialize(head(after), after["events"])
        assert events[-1].seq == after["seq"]
        assert events[-1].counts == Counts.model_validate(after["counts"])
        shown = CostTotals.model_validate(after["cost"]).model_dump(mode="json")
        assert events[-1].model_dump(mode="json")["cost"] == shown
    return after


def head(doc: dict[str, Any]) -> LogHead:
    counts = Counts.model_validate(doc["counts"])
    cost = CostTotals.model_validate(doc["cost"])
    return LogHead("p1", doc["tenant_id"], doc["seq"], counts, doc["correlation_id"], cost)


def to_processing(doc: dict[str, Any], scene: int, *, token: str | None = None) -> Write:
    return clipmoves.to_processing(
        "p1",
        scene,
        f"t{scene}",
        token=token or f"k{scene}",
        now=T0,
        lease_until=T0 + LEASE,
        correlation_id=None,
        log_size=LOG,
    )


def to_terminal(scene: int, result: Any, task: str | None = None, **kwargs: Any) -> Write:
    return clipmoves.to_terminal(
        "p1",
        scene,
        task or f"t{scene}",
        result,
        now=T0,
        correlation_id=None,
        log_size=LOG,
        **kwargs,
    )


def finish(doc: dict[str, Any]) -> Write:
    return clipmoves.finish(
        "p1", Counts.model_validate(doc["counts"]), now=T0, correlation_id=None, log_size=LOG
    )


def retry(doc: dict[str, Any], *, now: datetime = T0) -> dict[str, Any]:
    """``doc`` after its failed scene 0 was given the new task ``t9`` (chain ``k9``) at ``now``."""
    clip = project_from_document(doc).clips[0]
    write = retries.retry_with_new_task(
        "p1", "tenant-a", clip, new_task_uuid="t9", token="k9", now=now, lease_until=now + LEASE,
        correlation_id=None, log_size=LOG,
    )  # fmt: skip
    return step(doc, write)


VIDEO = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.5)
BROKEN = TaskFailed(code="contentPolicyViolation", message="no")


def test_processing_is_one_event_with_no_move_between_buckets() -> None:
    doc = new_doc()

    after = step(doc, to_processing(doc, 0))

    clip = after["clips"]["0"]
    assert (clip["status"], clip["submitted_at"], clip["lease"]) == (
        "processing",
        T0,
        {"token": "k0", "until": T0 + LEASE},
    )
    assert after["counts"] == doc["counts"]
    (event,) = materialize(head(after), after["events"])
    assert isinstance(event, ClipUpdated)
    assert (event.seq, event.clip.status, event.correlation_id) == (1, "processing", "req-1")


def test_processing_needs_the_chains_token_and_a_queued_clip() -> None:
    doc = new_doc()

    assert not matches(doc, to_processing(doc, 0, token="k1").filter)
    started = step(doc, to_processing(doc, 0))
    assert not matches(started, to_processing(started, 0).filter)  # a duplicate


def test_a_result_ends_the_clip_whatever_chain_brings_it() -> None:
    doc = step(new_doc(), to_processing(new_doc(), 0))

    after = step(doc, to_terminal(0, VIDEO))

    clip = project_from_document(after).clips[0]
    assert (clip.status, clip.video_url, clip.cost) == ("success", "https://v/0.mp4", 0.5)
    assert (clip.completed_at, clip.submitted_at, clip.lease) == (T0, T0, None)
    # The end is one packed value: nothing of it is a field the database walks.
    assert sorted(after["clips"]["0"]) == ["result", "status", "submitted_at", "task_uuid"]
    assert after["cost"] == {"usd": 0.5, "known": 1, "unknown": 0}
    assert after["counts"]["completed"] == 1
    assert not matches(after, to_terminal(0, BROKEN).filter)  # terminal never changes


def test_a_result_also_ends_a_clip_still_queued() -> None:
    # A webhook-hinted check can beat the submitter's own write.
    doc = new_doc()

    after = step(doc, to_terminal(0, VIDEO))

    assert after["clips"]["0"]["status"] == "success"


def test_a_submit_chain_fails_only_the_queued_clip_it_holds() -> None:
    doc = new_doc()
    queued_only: dict[str, Any] = {"token": "k0", "statuses": (ClipStatus.QUEUED,)}

    assert not matches(
        doc, to_terminal(0, BROKEN, token="stale", statuses=(ClipStatus.QUEUED,)).filter
    )
    started = step(doc, to_processing(doc, 0))
    assert not matches(started, to_terminal(0, BROKEN, **queued_only).filter)
    assert matches(doc, to_terminal(0, BROKEN, **queued_only).filter)


OUTAGE = {"code": "serviceUnavailable", "message": "Temporary capacity constraint."}


def waiting(scene: int, *, token: str | None = None) -> Write:
    return clipmoves.waiting(
        "p1", scene, f"t{scene}", OUTAGE, token=token or f"k{scene}", now=T0,
        correlation_id=None, log_size=LOG,
    )  # fmt: skip


def test_a_queued_clip_says_why_it_waits_until_runware_has_it() -> None:
    doc = new_doc()
    assert not matches(doc, waiting(0, token="stale").filter)

    after = step(doc, waiting(0))

    clip = project_from_document(after).clips[0]
    assert (clip.status, clip.view().waiting) == ("queued", OUTAGE)
    assert after["counts"] == doc["counts"]
    (event,) = materialize(head(after), after["events"])
    assert isinstance(event, ClipUpdated)
    assert (event.clip.status, event.clip.waiting) == ("queued", OUTAGE)
    started = step(after, to_processing(after, 0))
    assert "waiting" not in started["clips"]["0"]
    assert not matches(started, waiting(0).filter)  # only while queued
    failed = step(after, to_terminal(0, BROKEN))
    assert "waiting" not in failed["clips"]["0"]


def test_a_result_of_another_task_matches_nothing() -> None:
    doc = new_doc()

    assert not matches(doc, to_terminal(0, VIDEO, task="t1").filter)


def test_the_finisher_matches_only_the_counts_it_saw() -> None:
    doc = new_doc(1)
    done = step(doc, to_terminal(0, BROKEN))
    write = finish(done)

    finished = step(done, write)

    assert finished["status"] == "failed"
    events = materialize(head(finished), finished["events"])
    assert isinstance(events[-1], ProjectFinished)
    assert (events[-1].seq, events[-1].status) == (2, ProjectStatus.FAILED)
    assert not matches(finished, write.filter)  # only once
    moved = {**done, "counts": {**done["counts"], "failed": 0, "pending": 1}}
    assert not matches(moved, write.filter)  # the counts moved (a retry): not this finish
    # Dotted count fields, never a subdocument equality (that depends on field order).
    assert not any(isinstance(value, dict) for value in write.filter.values())


def test_a_renewal_needs_the_token_and_the_lease_it_saw_and_only_moves_the_lease() -> None:
    doc = new_doc()
    later = T0 + 2 * LEASE

    renewal = chainleases.renew_lease("p1", 0, token="k0", until_was=T0 + LEASE, until=later)

    after = find_one_and_update(doc, renewal.filter, renewal.update)
    assert after is not None
    assert after["clips"]["0"]["lease"] == {"token": "k0", "until": later}
    assert (after["seq"], after["due_at"]) == (doc["seq"], doc["due_at"])
    stale = chainleases.renew_lease("p1", 0, token="k1", until_was=T0 + LEASE, until=later)
    assert not matches(doc, stale.filter)
    assert not matches(after, renewal.filter)  # a fork of the chain renewing second stops


def test_an_expired_lease_lowers_due_at() -> None:
    doc = new_doc()

    write = chainleases.expire_lease("p1", 1, token="k1", now=T0)

    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert (after["clips"]["1"]["lease"]["until"], after["due_at"]) == (T0, T0)


def test_cancel_moves_an_open_clip_to_cancelled() -> None:
    doc = new_doc()
    clip = project_from_document(doc).clips[0]

    after = step(
        doc, cancellation.cancel("p1", "tenant-a", clip, now=T0, correlation_id=None, log_size=LOG)
    )

    assert after["clips"]["0"]["status"] == "cancelled"
    assert after["counts"]["cancelled"] == 1
    other_tenant = cancellation.cancel(
        "p1", "tenant-b", clip, now=T0, correlation_id=None, log_size=LOG
    )
    assert not matches(doc, other_tenant.filter)


def test_a_retry_keeps_the_failed_task_in_attempts_and_queues_a_new_one() -> None:
    doc = step(new_doc(1), to_terminal(0, BROKEN))
    doc = step(doc, finish(doc))
    clip = project_from_document(doc).clips[0]
    # What the failed task left: a stored progress, a reservation of a ledger since removed.
    doc["clips"]["0"] |= {"progress": 40, "charge": {"usd": 0.4}}

    after = step(
        doc,
        retries.retry_with_new_task(
            "p1", "tenant-a", clip, new_task_uuid="t9", token="k9", now=T0 + LEASE,
            lease_until=T0 + 2 * LEASE, correlation_id=None, log_size=LOG,
        ),
    )  # fmt: skip

    new = after["clips"]["0"]
    assert (new["task_uuid"], new["status"], new["lease"]["token"]) == ("t9", "queued", "k9")
    assert "progress" not in new
    assert "charge" not in new
    assert new["attempts"]["t0"]["status"] == "failed"
    assert new["attempts"]["t0"]["error"] == {"code": "contentPolicyViolation", "message": "no"}
    assert (after["status"], "finished_at" in after) == ("generating", False)
    assert after["due_at"] == T0 + LEASE  # $min: never raised
    event = materialize(head(after), after["events"])[-1]
    assert isinstance(event, ClipUpdated)
    assert (event.replaces_task_uuid, event.clip.task_uuid) == ("t0", "t9")
    # The clip as a read shows it, attempts and all: a client replacing its clip by the
    # event's keeps the failed task, and no error of it.
    assert event.clip == project_from_document(after).clips[0].view()
    assert event.clip.error is None
    assert [(a.task_uuid, a.error) for a in event.clip.attempts or []] == [
        ("t0", {"code": "contentPolicyViolation", "message": "no"})
    ]


def test_a_timed_out_clip_is_watched_again_without_a_new_task() -> None:
    timed_out = TaskFailed(code=retries.TIMED_OUT, message="too long")
    doc = step(new_doc(1), to_processing(new_doc(1), 0))
    doc = step(doc, clipmoves.progress("p1", 0, "t0", 75, submitted_at=T0, now=T0,
                                       correlation_id=None, log_size=LOG))  # fmt: skip
    doc = step(doc, to_terminal(0, timed_out, submitted_at=T0))
    clip = project_from_document(doc).clips[0]
    later = T0 + 3 * LEASE

    after = step(
        doc,
        retries.rewatch(
            "p1", "tenant-a", clip, token="k9", now=later, lease_until=later + LEASE,
            correlation_id=None, log_size=LOG,
        ),
    )  # fmt: skip

    again = project_from_document(after).clips[0]
    assert (again.task_uuid, again.status, again.error, again.completed_at) == (
        "t0",
        "processing",
        None,
        None,
    )
    assert (again.watched_since, again.submitted_at) == (later, T0)
    assert "result" not in after["clips"]["0"]
    # Its event is the clip as a read shows it: the same task's progress, stored before.
    event = materialize(head(after), after["events"])[-1]
    assert isinstance(event, ClipUpdated)
    assert event.clip == again.view(with_attempts=False)
    assert event.clip.progress == 75
    runware_failed = step(new_doc(1), to_terminal(0, BROKEN))
    failed_clip = project_from_document(runware_failed).clips[0]
    rewatch = retries.rewatch(
        "p1", "tenant-a", failed_clip, token="k", now=later, lease_until=later,
        correlation_id=None, log_size=LOG,
    )  # fmt: skip
    assert not matches(runware_failed, rewatch.filter)  # Runware said failed: a new task instead


@pytest.mark.parametrize(
    "reserved", [None, Charge(id="c2", usd=0.5, day="2026-12-02", month="2026-12")]
)
def test_a_rewatch_keeps_no_reservation_its_timed_out_end_freed(reserved: Charge | None) -> None:
    """The timed-out end freed the clip's charge: the clip watched again holds only what its
    retry reserved (nothing, once its tenant's limits went away), never that freed one, which a
    later cancel or end would otherwise settle a second time."""
    timed_out = TaskFailed(code=retries.TIMED_OUT, message="too long")
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    doc = step(step(doc, to_processing(doc, 0)), to_terminal(0, timed_out))
    clip = project_from_document(doc).clips[0]

    after = step(
        doc,
        retries.rewatch(
            "p1", "tenant-a", clip, token="k9", now=T0, lease_until=T0 + LEASE,
            correlation_id=None, log_size=LOG, charge=reserved,
        ),
    )  # fmt: skip

    assert project_from_document(after).clips[0].charge == reserved


def test_a_rearm_is_guarded_on_the_lease_as_read() -> None:
    doc = new_doc()
    clip = project_from_document(doc).clips[0]

    write = reconciler.rearm("p1", clip, new_token="k9", until=T0 + 2 * LEASE)

    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert after["clips"]["0"]["lease"]["token"] == "k9"
    assert not matches(after, write.filter)  # a second reconciler with the same read


def test_a_claim_matches_only_the_due_at_that_was_read() -> None:
    doc = new_doc()

    write = reconciler.claim("p1", due_at=doc["due_at"], until=T0 + 2 * LEASE)

    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert after["due_at"] == T0 + 2 * LEASE
    assert not matches(after, write.filter)


@pytest.mark.parametrize("shape", ["slim", "written before"])
@pytest.mark.parametrize("current", ["queued", "processing"])
def test_a_late_video_of_an_earlier_task_becomes_an_open_clips_video(
    current: str, shape: str
) -> None:
    doc = retry(
        step(new_doc(1), to_terminal(0, TaskFailed(code="taskFailedOrNotFound", message="?")))
    )
    if current == "processing":
        doc = step(doc, clipmoves.to_processing("p1", 0, "t9", token="k9", now=T0,
                                                lease_until=T0 + LEASE,
                                                correlation_id=None, log_size=LOG))  # fmt: skip
        doc = step(doc, clipmoves.progress("p1", 0, "t9", 40, submitted_at=T0, now=T0,
                                           correlation_id=None, log_size=LOG))  # fmt: skip
    if shape == "written before":  # the clip as the code before the slim entry left it
        doc = written_before(doc, T0)
    clip = project_from_document(doc).clips[0]

    write = lateresults.late_result(
        "p1", clip, "t0", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )

    assert write is not None
    after = step(doc, write)
    now_clip = after["clips"]["0"]
    # Nothing of the replaced task stays on the clip (its error, lease, progress, watch,
    # the fields written before): what goes is TASK_FIELDS less what the write sets.
    assert sorted(now_clip) == ["attempts", "queued_at", "result", "status", "task_uuid"]
    assert (now_clip["task_uuid"], now_clip["status"]) == ("t0", "success")
    assert now_clip["attempts"]["t9"]["status"] == current
    assert "t0" not in now_clip["attempts"]
    assert after["counts"]["completed"] == 1
    assert project_from_document(after).clips[0].late
    event = materialize(head(after), after["events"])[-1]
    assert isinstance(event, ClipUpdated)
    assert (event.replaces_task_uuid, event.cost_counted) == ("t9", None)  # counted now
    # The task it replaced moved to its attempts: the event says them all.
    assert event.clip == project_from_document(after).clips[0].view()
    assert [(a.task_uuid, a.status) for a in event.clip.attempts or []] == [("t9", current)]
    assert event.cost == CostTotals(usd=0.5, known=1)
    # Its own reservation was freed when it failed: billed on its own; the task it
    # replaced keeps its reservation until it ends.
    assert write.settle == ("clips.0.charge", Settlement("t0:late", False, True, 0.5))


def finished_failed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with scene 0 failed and the project finished (one ``project.finished``)."""
    doc = step(doc, to_terminal(0, BROKEN, task=project_from_document(doc).clips[0].task_uuid))
    return step(doc, finish(doc))


@pytest.mark.parametrize("own_task", [False, True])
def test_a_late_video_of_a_finished_failed_clip_is_an_attempt_and_changes_no_status(
    own_task: bool,
) -> None:
    """An earlier task's video, or the clip's own task's after our ceiling gave it up."""
    if own_task:  # t0 timed out (or was not found): the clip stands for it
        doc = finished_failed(new_doc(1))
    else:  # t0 failed, the retry's t9 failed too
        doc = finished_failed(retry(step(new_doc(1), to_terminal(0, BROKEN))))
    clip = project_from_document(doc).clips[0]
    late_task = "t0"

    write = lateresults.late_result(
        "p1", clip, late_task, VIDEO, now=T0, correlation_id=None, log_size=LOG
    )

    assert write is not None
    after = step(doc, write)
    again = project_from_document(after)
    assert (again.status, again.counts, again.clips[0].status) == (
        doc["status"],
        Counts.model_validate(doc["counts"]),
        "failed",
    )
    assert again.clips[0].task_uuid == clip.task_uuid
    attempt = again.clips[0].attempts[late_task]
    assert (attempt.status, attempt.video_url, attempt.cost, attempt.late) == (
        "success",
        VIDEO.video_url,
        0.5,
        True,
    )
    assert (again.cost.usd, again.cost.known) == (0.5, 1)
    (event,) = materialize(head(after), after["events"])[-1:]
    assert isinstance(event, AttemptSucceeded)
    assert (event.seq, event.scene_index, event.attempt.task_uuid) == (doc["seq"] + 1, 0, "t0")
    # An earlier attempt without a charge (this tenant has no ledger, or the code before
    # attempts held one wrote it) settles on the clip's current charge, if any.
    where = f"clips.0.attempts.{late_task}.charge" if own_task else "clips.0.charge"
    assert write.settle == (where, Settlement("t0:late", False, True, 0.5))
    assert not matches(after, write.filter)  # once
    assert lateresults.late_result("p1", again.clips[0], late_task, VIDEO, now=T0,
                                   correlation_id=None, log_size=LOG) is None  # fmt: skip

    # A retry takes the video: nothing is bought, the cost is not counted again.
    taken = retries.take_late_video("p1", "tenant-a", again.clips[0], now=T0,
                                    lease_until=T0 + LEASE, correlation_id=None,
                                    log_size=LOG)  # fmt: skip
    assert taken is not None
    assert taken.settle is None
    took = step(after, taken)
    clip_now = project_from_document(took).clips[0]
    assert (clip_now.task_uuid, clip_now.status, clip_now.video_url, clip_now.late) == (
        "t0",
        "success",
        VIDEO.video_url,
        True,
    )
    assert "t0" not in clip_now.attempts
    assert clip_now.error is None
    assert project_from_document(took).cost == again.cost
    event = materialize(head(took), took["events"])[-1]
    assert isinstance(event, ClipUpdated)
    assert event.replaces_task_uuid == (None if own_task else "t9")
    # Readers that add a success's cost are told it is counted already.
    assert (event.clip.cost, event.cost_counted) == (VIDEO.cost, True)
    assert took["counts"]["completed"] == 1


def test_a_late_end_of_an_attempt_still_running_is_recorded_in_its_attempt() -> None:
    doc = new_doc(1)
    doc["clips"]["0"]["status"] = "success"
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "processing", "charge": CHARGE}}
    doc["counts"] = {**doc["counts"], "pending": 0, "completed": 1}
    clip = project_from_document(doc).clips[0]

    failed = lateresults.late_result(
        "p1", clip, "t8", BROKEN, now=T0, correlation_id=None, log_size=LOG
    )
    video = lateresults.late_result(
        "p1", clip, "t8", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )

    assert failed is not None
    assert failed.events == 0  # history only
    after = step(doc, failed)
    assert after["clips"]["0"]["attempts"]["t8"]["status"] == "failed"
    assert after["seq"] == doc["seq"]
    # Its reservation ends with it, wherever its end is recorded.
    assert failed.settle == ("clips.0.attempts.t8.charge", Settlement("t8", True, False, None))
    assert video is not None
    assert video.settle == ("clips.0.attempts.t8.charge", Settlement("t8", True, True, 0.5))
    billed = step(doc, video)
    (event,) = materialize(head(billed), billed["events"])
    assert isinstance(event, AttemptSucceeded)
    assert billed["cost"]["usd"] == 0.5
    assert (
        lateresults.late_result("p1", clip, "t7", BROKEN, now=T0, correlation_id=None, log_size=LOG)
        is None
    )


def test_an_attempt_written_before_attempts_held_charges_settles_as_that_code_did() -> None:
    """No ``charge`` on the attempt: a video on the clip's charge as ``<task>:late``, freeing
    nothing; a failure not at all (the old code never settled one)."""
    doc = new_doc(1)
    doc["clips"]["0"] |= {"status": "success", "charge": CHARGE}
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "processing"}}
    doc["counts"] = {**doc["counts"], "pending": 0, "completed": 1}
    clip = project_from_document(doc).clips[0]

    failed = lateresults.late_result(
        "p1", clip, "t8", BROKEN, now=T0, correlation_id=None, log_size=LOG
    )
    video = lateresults.late_result(
        "p1", clip, "t8", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )

    assert failed is not None
    assert failed.settle is None
    assert video is not None
    assert video.settle == ("clips.0.charge", Settlement("t8:late", False, True, 0.5))
    billed = project_from_document(step(doc, video)).clips[0]
    assert charges.settlements(billed, "t8") == [
        (Charge.model_validate(CHARGE), Settlement("t8:late", False, True, 0.5))
    ]


def test_a_video_already_recorded_in_an_attempt_is_not_taken_and_counted_again() -> None:
    """An open clip with an attempt that is a success already (recorded, billed, counted):
    another copy of that video changes nothing (the next retry takes it at no charge)."""
    doc = retry(step(new_doc(1), to_terminal(0, BROKEN)))
    doc["clips"]["0"]["attempts"]["t0"] |= {"status": "success", "cost": 0.5, "late": True}
    clip = project_from_document(doc).clips[0]

    assert (
        lateresults.late_result("p1", clip, "t0", VIDEO, now=T0, correlation_id=None, log_size=LOG)
        is None
    )


def test_the_event_log_keeps_only_the_last_events() -> None:
    doc = new_doc(3)
    for scene in range(3):
        write = clipmoves.to_processing(
            "p1",
            scene,
            f"t{scene}",
            token=f"k{scene}",
            now=T0,
            lease_until=T0 + LEASE,
            correlation_id=None,
            log_size=2,
        )
        doc = step(doc, write)

    assert len(doc["events"]) == 2
    assert [e.seq for e in materialize(head(doc), doc["events"])] == [2, 3]


def test_an_earlier_task_still_queued_that_runware_took_is_processing_in_its_attempt() -> None:
    doc = new_doc(1)
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "queued"}}
    clip = project_from_document(doc).clips[0]

    write = follows.earlier_task_submitted(
        "p1", clip, "t8", token=None, now=T0, lease_until=T0 + LEASE
    )

    assert write is not None
    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert after["clips"]["0"]["attempts"]["t8"] == {"status": "processing", "submitted_at": T0}
    assert not matches(after, write.filter)  # once
    assert (
        follows.earlier_task_submitted("p1", clip, "t7", token=None, now=T0, lease_until=T0 + LEASE)
        is None
    )


def test_an_earlier_task_submitted_is_watched_from_its_submit_not_its_queueing() -> None:
    doc = new_doc(1)
    # A watch carried from its queueing (a re-armed chain, an older release).
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "queued", "watched_since": T0 - LEASE}}
    clip = project_from_document(doc).clips[0]

    write = follows.earlier_task_submitted(
        "p1", clip, "t8", token=None, now=T0, lease_until=T0 + LEASE
    )

    assert write is not None
    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert after["clips"]["0"]["attempts"]["t8"] == {"status": "processing", "submitted_at": T0}
    assert project_from_document(after).clips[0].attempts["t8"].watch_start() == T0


def test_only_the_chain_holding_an_earlier_tasks_lease_marks_it_processing() -> None:
    doc = new_doc(1)
    lease = {"token": "chain-a", "until": T0}
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "queued", "lease": lease}}
    clip = project_from_document(doc).clips[0]

    stale = follows.earlier_task_submitted(
        "p1", clip, "t8", token="chain-b", now=T0, lease_until=T0 + LEASE
    )
    assert stale is not None
    assert not matches(doc, stale.filter)  # another chain's: nothing marked, no lease moved

    write = follows.earlier_task_submitted(
        "p1", clip, "t8", token="chain-a", now=T0, lease_until=T0 + LEASE
    )
    assert write is not None
    after = find_one_and_update(doc, write.filter, write.update)
    assert after is not None
    assert after["clips"]["0"]["attempts"]["t8"]["status"] == "processing"
    assert after["clips"]["0"]["attempts"]["t8"]["lease"] == {
        "token": "chain-a",
        "until": T0 + LEASE,
    }


def test_a_clip_written_before_is_watched_from_its_submit_once_processing() -> None:
    doc = written_before(new_doc(1), T0)
    later = T0 + LEASE / 2

    write = clipmoves.to_processing(
        "p1", 0, "t0", token="k0", now=later, lease_until=later + LEASE, correlation_id=None,
        log_size=LOG,
    )  # fmt: skip
    after = step(doc, write)

    clip = project_from_document(after).clips[0]
    assert (clip.watch_start(), clip.submitted_at, clip.queued_at) == (later, later, T0)


def test_a_retry_of_a_clip_written_before_leaves_nothing_of_the_failed_task() -> None:
    doc = step(written_before(new_doc(1), T0), to_terminal(0, BROKEN))
    doc = step(doc, finish(doc))
    later = T0 + LEASE

    after = retry(doc, now=later)

    assert sorted(after["clips"]["0"]) == ["attempts", "lease", "queued_at", "status", "task_uuid"]
    new = project_from_document(after).clips[0]
    assert (new.task_uuid, new.status, new.queued_at, new.watch_start()) == (
        "t9",
        "queued",
        later,
        later,
    )
    assert (new.completed_at, new.error, new.submitted_at) == (None, None, None)
    assert new.attempts["t0"].error == {"code": "contentPolicyViolation", "message": "no"}
    assert new.attempts["t0"].queued_at == T0


@pytest.mark.parametrize("code", [retries.TIMED_OUT, "taskFailedOrNotFound"])
def test_a_retry_read_before_a_late_video_came_buys_and_watches_nothing(code: str) -> None:
    doc = step(new_doc(1), to_terminal(0, TaskFailed(code=code, message="?")))
    read = project_from_document(doc).clips[0]
    late = lateresults.late_result(
        "p1", read, "t0", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )
    assert late is not None
    after = step(doc, late)  # the video came between the retry's read and its write

    common: dict[str, Any] = {"token": "k", "now": T0, "lease_until": T0 + LEASE,
                              "correlation_id": None, "log_size": LOG}  # fmt: skip
    if code == retries.TIMED_OUT:
        write = retries.rewatch("p1", "tenant-a", read, **common)
    else:
        write = retries.retry_with_new_task("p1", "tenant-a", read, new_task_uuid="t9", **common)

    assert matches(doc, write.filter)
    assert not matches(after, write.filter)


# --- a task Runware may bill after its clip was given up on: followed under attempts.T -------


def cancel(doc: dict[str, Any], *, now: datetime = T0, lease_as_read: bool = True) -> Write:
    clip = project_from_document(doc).clips[0]
    return cancellation.cancel(
        "p1", "tenant-a", clip, now=now, correlation_id=None, log_size=LOG,
        lease_as_read=lease_as_read, follow_token="f0",
    )  # fmt: skip


def charged_processing() -> dict[str, Any]:
    """One clip, reserved on its tenant's ledger, that Runware holds (chain ``k0``)."""
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    return step(doc, to_processing(doc, 0))


def late(doc: dict[str, Any], result: Any, task: str = "t0") -> Write | None:
    clip = project_from_document(doc).clips[0]
    return lateresults.late_result(
        "p1", clip, task, result, now=T0, correlation_id=None, log_size=LOG
    )


@pytest.mark.parametrize("status", ["processing", "queued"])
def test_cancel_of_a_charged_open_clip_moves_its_lease_and_charge_to_its_own_attempt(
    status: str,
) -> None:
    """A processing clip's task runs on at Runware; a queued one's chain may still send it
    (``queued`` there: its chain's word to come, as a replaced task's)."""
    if status == "processing":
        doc = charged_processing()
    else:
        doc = new_doc(1)
        doc["clips"]["0"]["charge"] = CHARGE
    later = T0 + timedelta(minutes=1)

    write = cancel(doc, now=later)
    after = step(doc, write)

    clip = project_from_document(after).clips[0]
    assert (clip.status, clip.lease, clip.charge) == (ClipStatus.CANCELLED, None, None)
    followed = clip.attempts["t0"]
    assert followed.status == ("cancelled" if status == "processing" else "queued")
    assert followed.lease is not None
    assert (followed.lease.token, followed.lease.until) == ("k0", T0 + LEASE)
    submitted_at = T0 if status == "processing" else None
    assert (followed.submitted_at, followed.charge) == (submitted_at, Charge.model_validate(CHARGE))
    assert clip.awaits_submit_word("t0") is (status == "queued")
    # The attempts reconciler finds it if its chain is lost: at most the lease's end.
    assert after[markers.ATTEMPTS_DUE] == later
    # Runware runs (or may run) the task: its charge moved with it, in flight until its end.
    assert write.settle is None
    assert clip.charge_in_flight("t0")
    assert charges.settlements(clip, "t0") == []
    # Its chain renews the lease there (the clip's own matches nothing now).
    renewal = chainleases.renew_lease(
        "p1", 0, token="k0", until_was=T0 + LEASE, until=T0 + 2 * LEASE
    )
    assert not matches(after, renewal.filter)
    in_attempt = chainleases.renew_lease(
        "p1", 0, token="k0", until_was=T0 + LEASE, until=T0 + 2 * LEASE, replaced_task="t0"
    )
    assert matches(after, in_attempt.filter)
    # The cancel's view says nothing of it: the clip says it all until a video comes.
    assert clip.view().attempts is None


def test_cancel_is_guarded_on_the_clip_and_its_lease_as_read() -> None:
    queued = new_doc(1)
    doc = charged_processing()
    renewed = chainleases.renew_lease(
        "p1", 0, token="k0", until_was=T0 + LEASE, until=T0 + 2 * LEASE
    )
    moved = find_one_and_update(doc, renewed.filter, renewed.update)
    assert moved is not None

    # Read queued, now processing: read again (its lease has to move).
    assert not matches(doc, cancel(queued).filter)
    # A renewal (or a re-arm) since the read: read again.
    assert not matches(moved, cancel(doc).filter)
    # The last try moves the lease as read all the same: the renewed chain stops at its next
    # renewal, and the attempts reconciler re-arms from the earlier end.
    after = step(moved, cancel(doc, lease_as_read=False))
    lease = project_from_document(after).clips[0].attempts["t0"].lease
    assert lease is not None
    assert lease.until == T0 + LEASE
    # A queued clip without a charge (its tenant has no ledger) holds nothing: nothing moves
    # (a submit that gets there after the cancel is followed from there: follow_given_up).
    cancelled = step(queued, cancel(queued))
    assert "attempts" not in cancelled["clips"]["0"]
    assert markers.ATTEMPTS_DUE not in cancelled


def cancelled_before(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc``'s cancelled clip as the release before left it: the cancel freed the clip's
    charge, which stayed on the clip (and was copied into the followed ``attempts.t0``)."""
    clip = dict(doc["clips"]["0"], charge=CHARGE)
    return dict(doc, clips={"0": clip})


def charged_queued_cancelled() -> dict[str, Any]:
    """One clip, reserved on its tenant's ledger, cancelled while queued (chain ``k0``)."""
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    return step(doc, cancel(doc))


def submitted_after_the_cancel(doc: dict[str, Any], *, chain: str = "k0") -> Write | None:
    clip = project_from_document(doc).clips[0]
    return follows.earlier_task_submitted(
        "p1", clip, "t0", token=chain, now=T0, lease_until=T0 + 2 * LEASE
    )


def never_submitted(chain: str = "k0") -> Write:
    given_up = {"code": "clipGivenUp", "message": "x"}
    return follows.never_submitted("p1", 0, "t0", given_up, token=chain, now=T0)


@pytest.mark.parametrize(
    "how",
    [
        "cancelled while processing",
        "queued, found by its chain",
        "queued, found after its chain ended it",
        "cancelled before",
    ],
)
def test_a_followed_given_up_tasks_video_is_billed_once_in_its_attempt(how: str) -> None:
    if how == "cancelled while processing":
        doc = step(charged_processing(), cancel(charged_processing()))
    elif how == "cancelled before":
        doc = cancelled_before(step(charged_processing(), cancel(charged_processing())))
    elif how == "queued, found by its chain":
        doc = charged_queued_cancelled()
        submitted = submitted_after_the_cancel(doc)
        assert submitted is not None
        doc = step(doc, submitted)
    else:
        doc = step(charged_queued_cancelled(), never_submitted())
        clip = project_from_document(doc).clips[0]
        follow = follows.follow_given_up("p1", clip, "t0", token="f1", now=T0, until=T0 + LEASE)
        assert follow is not None
        doc = step(doc, follow)
    seq, counts, status = doc["seq"], doc["counts"], doc["status"]

    write = late(doc, VIDEO)

    assert write is not None
    after = step(doc, write)
    clip = project_from_document(after).clips[0]
    assert clip.status is ClipStatus.CANCELLED
    ended = clip.attempts["t0"]
    # Late where the reservation was freed before (its chain ended the task it had not sent,
    # or the release before's cancel); else its charge was in flight with it.
    held = how in ("cancelled while processing", "queued, found by its chain")
    assert (ended.status, ended.cost, ended.late, ended.lease) == ("success", 0.5, not held, None)
    assert (after["counts"], after["status"], after["seq"]) == (counts, status, seq + 1)
    (event,) = materialize(head(after), after["events"])[-1:]
    assert isinstance(event, AttemptSucceeded)
    assert (event.attempt.task_uuid, event.attempt.cost) == ("t0", 0.5)
    assert project_from_document(after).cost.usd == 0.5
    charge = Charge.model_validate(CHARGE)
    if held:
        # The task's end: its cost replaces its estimate, one fewer in flight.
        settled = Settlement("t0", True, True, 0.5)
        repaired = [(charge, settled)]
    else:
        # Billed under its own key: the cancel freed the reservation under ``t0``.
        settled = Settlement("t0:late", False, True, 0.5)
        repaired = [(charge, Settlement("t0", True, False, None)), (charge, settled)]
    assert write.settle == ("clips.0.attempts.t0.charge", settled)
    assert charges.settlements(clip, "t0") == repaired
    # A duplicate (a redelivery, a re-armed chain, a webhook) records nothing more.
    assert not matches(after, write.filter)
    assert late(after, VIDEO) is None
    assert late(after, BROKEN) is None
    assert clip.view().attempts == [ended.view("t0")]


@pytest.mark.parametrize("before", [False, True], ids=["this release", "cancelled before"])
def test_a_followed_given_up_tasks_failure_ends_its_chain_without_an_event(before: bool) -> None:
    doc = step(charged_processing(), cancel(charged_processing()))
    doc = cancelled_before(doc) if before else doc

    write = late(doc, BROKEN)

    assert write is not None
    after = step(doc, write)
    ended = project_from_document(after).clips[0].attempts["t0"]
    assert (ended.status, ended.error, ended.lease) == ("failed", BROKEN.model_dump(), None)
    assert (after["seq"], write.events) == (doc["seq"], 0)
    if before:
        # Its reservation was freed by the cancel: its failure settles nothing more.
        assert write.settle is None
    else:
        # Held with the task until now: freed by its end, once.
        freed = Settlement("t0", True, False, None)
        assert write.settle == ("clips.0.attempts.t0.charge", freed)
    assert late(after, BROKEN) is None
    assert project_from_document(after).clips[0].view().attempts is None


def test_cancel_of_a_charged_queued_clip_is_guarded_on_its_chains_lease_as_read() -> None:
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    write = cancel(doc)
    # A renewal (or a re-arm) since the read: read again, as for a processing clip.
    renewal = chainleases.renew_lease(
        "p1", 0, token="k0", until_was=T0 + LEASE, until=T0 + 2 * LEASE
    )
    renewed = find_one_and_update(doc, renewal.filter, renewal.update)
    assert renewed is not None
    assert not matches(renewed, write.filter)
    # A queued clip without a lease gets a run-out one, for the attempts reconciler.
    leaseless = dict(doc, clips={"0": {k: v for k, v in doc["clips"]["0"].items() if k != "lease"}})
    orphan = project_from_document(step(leaseless, cancel(leaseless))).clips[0].attempts["t0"]
    assert orphan.lease is not None
    assert (orphan.status, orphan.lease.token, orphan.lease.until) == ("queued", "f0", T0)


def test_the_chain_of_a_cancelled_queued_task_ends_it_only_while_it_waits_under_its_lease() -> None:
    doc = charged_queued_cancelled()
    charge = Charge.model_validate(CHARGE)
    freed = (charge, Settlement("t0", True, False, None))

    write = never_submitted()
    after = step(doc, write)

    ended = project_from_document(after).clips[0]
    attempt = ended.attempts["t0"]
    assert (attempt.status, attempt.lease, attempt.end_recorded) == ("failed", None, False)
    assert attempt.completed_at == T0
    assert (after["seq"], write.events) == (doc["seq"], 0)  # history, no event
    # Its end frees the charge once; the repair path settles that end again (a no-op).
    assert write.settle == ("clips.0.attempts.t0.charge", freed[1])
    assert not ended.charge_in_flight("t0")
    assert charges.settlements(ended, "t0") == [freed]
    assert ended.view().attempts is None
    # Once: a duplicate matches nothing; nor another chain's word.
    assert not matches(after, write.filter)
    assert not matches(doc, never_submitted(chain="k9").filter)
    # Runware took it (its submit got through): marked processing under the chain's lease, so
    # the chain that ends it unsent (a stale copy) matches nothing, and its end settles it.
    submitted = submitted_after_the_cancel(doc)
    assert submitted is not None
    stale = submitted_after_the_cancel(doc, chain="k9")
    assert stale is not None
    assert not matches(doc, stale.filter)
    processing = step(doc, submitted)
    assert not matches(processing, write.filter)
    running = project_from_document(processing).clips[0]
    assert running.charge_in_flight("t0")
    assert not running.awaits_submit_word("t0")
    assert charges.settlements(running, "t0") == []
    failure = late(processing, BROKEN)
    assert failure is not None
    assert failure.settle == ("clips.0.attempts.t0.charge", freed[1])
    assert charges.settlements(project_from_document(step(processing, failure)).clips[0], "t0") == [
        freed
    ]


def test_another_chains_submit_of_a_held_task_is_recorded_once_and_outlasts_its_word() -> None:
    doc = charged_queued_cancelled()
    clip = project_from_document(doc).clips[0]
    # A chain under another token (re-armed) got the task to Runware: the entry records when.
    write = follows.held_task_submitted("p1", clip, "t0", now=T0 + LEASE)
    assert write is not None
    after = step(doc, write)

    held = project_from_document(after).clips[0]
    attempt = held.attempts["t0"]
    assert attempt.lease is not None
    assert (attempt.status, attempt.lease.token, attempt.submitted_at) == (
        "queued",
        "k0",
        T0 + LEASE,
    )
    assert (after["seq"], write.events, write.settle) == (doc["seq"], 0, None)
    assert held.charge_in_flight("t0")
    # Once: the first submit stays (Runware had the task from then).
    assert follows.held_task_submitted("p1", held, "t0", now=T0 + 2 * LEASE) is None
    assert not matches(after, write.filter)
    # The holder's word that Runware never got it matches nothing from now on; its own
    # → processing repair (it found the task there) still follows it under its lease.
    assert matches(doc, never_submitted().filter)
    assert not matches(after, never_submitted().filter)
    submitted = submitted_after_the_cancel(after)
    assert submitted is not None
    assert project_from_document(step(after, submitted)).clips[0].attempts["t0"].status == (
        "processing"
    )
    # Nothing to record once the entry is no longer waiting for its chain's word.
    ended = project_from_document(step(doc, never_submitted())).clips[0]
    assert follows.held_task_submitted("p1", ended, "t0", now=T0) is None


def test_the_repair_path_settles_a_followed_own_task_by_the_end_that_freed_its_charge() -> None:
    doc = step(charged_processing(), cancel(charged_processing()))
    failure = late(doc, BROKEN)
    assert failure is not None
    after = step(doc, failure)
    video = late(after, VIDEO)  # a video after all, once its end was recorded
    assert video is not None
    billed = step(after, video)
    charge = Charge.model_validate(CHARGE)
    freed = (charge, Settlement("t0", True, False, None))

    # Still followed: nothing settled yet. Its failure recorded: that end, once.
    assert charges.settlements(project_from_document(doc).clips[0], "t0") == []
    assert charges.settlements(project_from_document(after).clips[0], "t0") == [freed]
    # A video after that end is billed on its own (its reservation is freed already); the
    # repair settles that end again too (a no-op once made), then the video.
    assert video.settle == ("clips.0.attempts.t0.charge", Settlement("t0:late", False, True, 0.5))
    assert charges.settlements(project_from_document(billed).clips[0], "t0") == [
        freed,
        (charge, Settlement("t0:late", False, True, 0.5)),
    ]
    # Cancelled by the release before: only the cancel's end, once, whatever came after.
    for doc_now in (doc, after):
        clip = project_from_document(cancelled_before(doc_now)).clips[0]
        assert charges.settlements(clip, "t0") == [freed]


def test_a_given_up_task_is_followed_by_one_chain_only() -> None:
    doc = new_doc(1)
    doc = step(doc, cancel(doc))
    clip = project_from_document(doc).clips[0]

    write = follows.follow_given_up("p1", clip, "t0", token="f1", now=T0, until=T0 + LEASE)

    assert write is not None
    after = step(doc, write)
    followed = project_from_document(after).clips[0]
    attempt = followed.attempts["t0"]
    assert attempt.lease is not None
    assert (attempt.status, attempt.lease.token, attempt.submitted_at) == ("cancelled", "f1", T0)
    assert after[markers.ATTEMPTS_DUE] == T0
    # A second chain (a fork, the reconciler, a redelivery) finds it followed.
    assert not matches(after, write.filter)
    assert follows.follow_given_up("p1", followed, "t0", token="f2", now=T0, until=T0) is None
    # Nor is an open clip's own task (its chain follows it), nor a recorded video.
    open_clip = project_from_document(new_doc(1)).clips[0]
    assert follows.follow_given_up("p1", open_clip, "t0", token="f3", now=T0, until=T0) is None
    recorded = late(after, VIDEO)
    assert recorded is not None
    done = project_from_document(step(after, recorded)).clips[0]
    assert follows.follow_given_up("p1", done, "t0", token="f4", now=T0, until=T0) is None


def test_an_earlier_task_whose_attempt_ended_is_followed_field_by_field() -> None:
    doc = retry(step(new_doc(1), to_terminal(0, BROKEN)))
    clip = project_from_document(doc).clips[0]  # t9 queued, t0 failed in attempts

    write = follows.follow_given_up("p1", clip, "t0", token="f1", now=T0, until=T0 + LEASE)

    assert write is not None
    assert "clips.0.attempts.t0" not in write.update["$set"]  # never the whole entry
    after = step(doc, write)
    attempt = project_from_document(after).clips[0].attempts["t0"]
    assert attempt.lease is not None
    assert (attempt.status, attempt.error) == ("failed", BROKEN.model_dump())
    assert after[markers.ATTEMPTS_DUE] == T0


def test_an_earlier_task_that_ended_while_queued_is_followed_from_the_submit_found() -> None:
    doc = retry(step(new_doc(1), to_terminal(0, BROKEN)))
    read = project_from_document(doc).clips[0]
    assert read.attempts["t0"].submitted_at is None  # failed before Runware took it

    write = follows.follow_given_up("p1", read, "t0", token="f1", now=T0, until=T0 + LEASE)

    assert write is not None
    followed = project_from_document(step(doc, write)).clips[0].attempts["t0"]
    assert (followed.submitted_at, followed.watched_since) == (T0, T0)
    # One whose submit is recorded keeps it.
    doc["clips"]["0"]["attempts"]["t0"]["submitted_at"] = T0 - LEASE
    read = project_from_document(doc).clips[0]
    write = follows.follow_given_up("p1", read, "t0", token="f1", now=T0, until=T0 + LEASE)
    assert write is not None
    kept = project_from_document(step(doc, write)).clips[0].attempts["t0"]
    assert kept.submitted_at == T0 - LEASE


def followed_failed_clip(code: str) -> dict[str, Any]:
    """A failed clip (``code``) whose own task Runware turned out to hold: followed (``f1``)."""
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    doc = step(doc, to_terminal(0, TaskFailed(code=code, message="?")))
    doc = step(doc, finish(doc))
    clip = project_from_document(doc).clips[0]
    follow = follows.follow_given_up("p1", clip, "t0", token="f1", now=T0, until=T0 + LEASE)
    assert follow is not None
    return step(doc, follow)


def test_a_retry_keeps_the_lease_of_its_followed_task() -> None:
    doc = followed_failed_clip("taskFailedOrNotFound")

    after = retry(doc)

    clip = project_from_document(after).clips[0]
    assert (clip.task_uuid, clip.status) == ("t9", "queued")
    attempt = clip.attempts["t0"]
    assert attempt.lease is not None
    assert attempt.lease.token == "f1"  # not clobbered: its chain renews it on
    # Its video then comes while the retry's task is open: the clip takes it, billed once.
    taken = late(after, VIDEO)
    assert taken is not None
    took = project_from_document(step(after, taken)).clips[0]
    assert (took.task_uuid, took.status) == ("t0", "success")
    assert taken.settle == ("clips.0.charge", Settlement("t0:late", False, True, 0.5))


def test_taking_a_late_video_keeps_the_lease_of_the_followed_task() -> None:
    doc = followed_failed_clip("taskFailedOrNotFound")
    doc["clips"]["0"]["attempts"]["t8"] = {
        "status": "success", "video_url": "https://v/8.mp4", "cost": 0.3, "completed_at": T0,
        "queued_at": T0 - LEASE,
    }  # fmt: skip
    clip = project_from_document(doc).clips[0]

    taken = retries.take_late_video(
        "p1", "tenant-a", clip, now=T0, lease_until=T0 + LEASE, correlation_id=None, log_size=LOG
    )

    assert taken is not None
    after = step(doc, taken)
    clip = project_from_document(after).clips[0]
    assert (clip.task_uuid, clip.status) == ("t8", "success")
    lease = clip.attempts["t0"].lease
    assert lease is not None
    assert lease.token == "f1"
    # Its own video, later, is recorded in its attempt (the clip has one already).
    video = late(after, VIDEO)
    assert video is not None
    assert project_from_document(step(after, video)).clips[0].attempts["t0"].status == "success"


def test_a_rewatch_takes_its_followed_task_back_from_the_attempt() -> None:
    doc = followed_failed_clip(retries.TIMED_OUT)
    clip = project_from_document(doc).clips[0]

    after = step(
        doc,
        retries.rewatch(
            "p1", "tenant-a", clip, token="k9", now=T0, lease_until=T0 + LEASE,
            correlation_id=None, log_size=LOG,
        ),
    )  # fmt: skip

    again = project_from_document(after).clips[0]
    assert (again.status, again.attempts) == ("processing", {})
    # The attempt's chain stops at its next renewal: one task, one chain.
    renewal = chainleases.renew_lease(
        "p1", 0, token="f1", until_was=T0 + LEASE, until=T0 + 2 * LEASE, replaced_task="t0"
    )
    assert not matches(after, renewal.filter)


def test_a_late_video_taken_never_overwrites_an_attempt_a_concurrent_writer_added() -> None:
    doc = new_doc(1)
    doc["clips"]["0"]["charge"] = CHARGE
    doc = step(doc, to_terminal(0, TaskFailed(code="taskFailedOrNotFound", message="?")))
    doc["clips"]["0"]["attempts"] = {
        "t8": {"status": "success", "video_url": "https://v/8.mp4", "cost": 0.3,
               "completed_at": T0, "queued_at": T0 - LEASE},
    }  # fmt: skip
    read = project_from_document(doc).clips[0]
    taken = retries.take_late_video(
        "p1", "tenant-a", read, now=T0, lease_until=T0 + LEASE, correlation_id=None, log_size=LOG
    )
    assert taken is not None
    # Between the retry's read and its write, Runware turns out to hold t0: it is followed.
    follow = follows.follow_given_up("p1", read, "t0", token="f1", now=T0, until=T0 + LEASE)
    assert follow is not None
    followed = step(doc, follow)

    # The whole-entry write matches nothing there (the caller reads again), never clobbers.
    assert matches(doc, taken.filter)
    assert not matches(followed, taken.filter)
    again = retries.take_late_video(
        "p1", "tenant-a", project_from_document(followed).clips[0], now=T0,
        lease_until=T0 + LEASE, correlation_id=None, log_size=LOG,
    )  # fmt: skip
    assert again is not None
    lease = project_from_document(step(followed, again)).clips[0].attempts["t0"].lease
    assert lease is not None
    assert lease.token == "f1"


def test_a_followed_tasks_recorded_end_is_never_followed_again() -> None:
    doc = step(charged_processing(), cancel(charged_processing()))
    failure = late(doc, TaskFailed(code=retries.TIMED_OUT, message="ceiling"))
    assert failure is not None
    after = step(doc, failure)
    ended = project_from_document(after).clips[0]
    assert (ended.attempts["t0"].status, ended.attempts["t0"].end_recorded) == ("failed", True)

    # A submit redelivered, the reconciler: Runware holds the task, but its end is recorded.
    assert follows.follow_given_up("p1", ended, "t0", token="f2", now=T0, until=T0 + LEASE) is None
    # And a follow built from an older read of the same (failed, lease-less) entry matches
    # nothing once that end is recorded.
    read = ended.model_copy(
        update={"attempts": {"t0": ended.attempts["t0"].model_copy(update={"end_recorded": False})}}
    )
    stale = follows.follow_given_up("p1", read, "t0", token="f3", now=T0, until=T0 + LEASE)
    assert stale is not None
    assert not matches(after, stale.filter)


def test_cancel_of_a_processing_clip_without_a_lease_still_follows_its_task() -> None:
    doc = charged_processing()
    del doc["clips"]["0"]["lease"]  # its chain's lease lost (or never written by an old release)
    later = T0 + timedelta(minutes=1)

    after = step(doc, cancel(doc, now=later))

    followed = project_from_document(after).clips[0].attempts["t0"]
    assert followed.lease is not None
    # Run out already: no chain holds it; the attempts reconciler re-arms it at its next pass.
    assert (followed.status, followed.lease.token, followed.lease.until) == (
        "cancelled",
        "f0",
        later,
    )
    assert after[markers.ATTEMPTS_DUE] == later
    # A re-arm between the read and the write: the cancel reads again.
    rearmed = reconciler.rearm(
        "p1", project_from_document(doc).clips[0], new_token="k1", until=later
    )
    assert not matches(step(doc, rearmed), cancel(doc, now=later).filter)


def test_only_a_leased_attempt_of_a_clip_not_given_up_on_is_a_stray_to_drop() -> None:
    doc = charged_processing()
    stray = {"status": "cancelled", "lease": {"token": "s1", "until": T0}}
    doc["clips"]["0"]["attempts"] = {"t0": stray}
    clip = project_from_document(doc).clips[0]

    write = reconciler.drop_stray_attempt("p1", clip, "t0")

    assert write is not None
    after = step(doc, write)
    assert "attempts" not in after["clips"]["0"] or after["clips"]["0"]["attempts"] == {}
    assert after["clips"]["0"]["lease"] == doc["clips"]["0"]["lease"]  # the clip's chain goes on
    # Re-armed since the read: matches nothing. A given-up clip's followed task is no stray.
    held = clip.attempts["t0"].lease
    assert held is not None
    moved = step(
        doc, reconciler.rearm_attempt("p1", 0, "t0", held, new_token="s2", until=T0 + LEASE)
    )
    assert not matches(moved, write.filter)
    cancelled = project_from_document(step(charged_processing(), cancel(charged_processing())))
    assert reconciler.drop_stray_attempt("p1", cancelled.clips[0], "t0") is None


@pytest.mark.parametrize("shape", ["slim", "written before"])
def test_attempts_carry_a_watch_only_where_the_clip_stored_one(shape: str) -> None:
    # The release before refuses an attempt with ``watched_since``: the api's writes put it
    # there only where a rewatch stored it, never the start the other fields say.
    def widened(doc: dict[str, Any]) -> dict[str, Any]:
        return written_before(doc, T0) if shape == "written before" else doc

    cancelled = step(charged_processing(), cancel(widened(charged_processing())))
    assert "watched_since" not in cancelled["clips"]["0"]["attempts"]["t0"]

    failed = widened(step(new_doc(1), to_terminal(0, TaskFailed(code="x", message="?"))))
    retried = retry(failed)
    assert "watched_since" not in retried["clips"]["0"]["attempts"]["t0"]
    read = project_from_document(widened(retried)).clips[0]
    take = lateresults.late_result(
        "p1", read, "t0", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )
    assert take is not None
    took = step(retried, take)
    assert "watched_since" not in took["clips"]["0"]["attempts"]["t9"]

    # A clip watched again after ``timedOut`` stored its watch: its attempt keeps it.
    timed_out = TaskFailed(code=retries.TIMED_OUT, message="too long")
    doc = step(charged_processing(), to_terminal(0, timed_out))
    later = T0 + 3 * LEASE
    doc = step(doc, retries.rewatch(
        "p1", "tenant-a", project_from_document(doc).clips[0], token="k9", now=later,
        lease_until=later + LEASE, correlation_id=None, log_size=LOG,
    ))  # fmt: skip
    rewatched_cancelled = step(doc, cancel(widened(doc)))
    assert rewatched_cancelled["clips"]["0"]["attempts"]["t0"]["watched_since"] == later


def test_cancel_moves_the_clips_charge_into_an_existing_attempt_that_follows_the_task() -> None:
    # A stray (an old api's rewatch) with the charge its end freed, older than the clip's.
    older = CHARGE | {"id": "c0"}
    doc = charged_processing()
    stray = {"status": "failed", "lease": {"token": "s1", "until": T0}, "charge": older}
    doc["clips"]["0"]["attempts"] = {"t0": stray}

    write = cancel(doc)

    after = step(doc, write)
    clip = project_from_document(after).clips[0]
    assert write.settle is None
    assert (clip.charge, clip.attempts["t0"].charge) == (None, Charge.model_validate(CHARGE))
    assert clip.charge_in_flight("t0")
    ended = late(after, BROKEN)
    assert ended is not None
    assert ended.settle == ("clips.0.attempts.t0.charge", Settlement("t0", True, False, None))

    # The entry holds the clip's very charge (a rewatch that reserved nothing new): freed by
    # its end already, it stays on the clip, whose cancel settles it as before (a no-op).
    # So does a clip whose task's video is in the entry: nothing of that task is to come.
    for entry in ({"charge": CHARGE}, {"status": "success", "video_url": "https://v/0.mp4"}):
        same = charged_processing()
        same["clips"]["0"]["attempts"] = {"t0": stray | entry}
        write = cancel(same)
        kept = project_from_document(step(same, write)).clips[0]
        assert write.settle == ("clips.0.charge", Settlement("t0", True, False, None))
        assert kept.charge == Charge.model_validate(CHARGE)
        assert not kept.charge_in_flight("t0")


def test_cancel_follows_its_task_from_an_existing_attempt_guarded_as_read() -> None:
    # (A) A stray leased attempts.T (an old api's rewatch left it beside the clip's chain):
    # the cancel moves the clip's lease in, guarded on the stray's lease as read, so a
    # repair that dropped it meanwhile makes the cancel read again (and write a new entry).
    doc = charged_processing()
    stray = {"status": "cancelled", "lease": {"token": "s1", "until": T0}}
    doc["clips"]["0"]["attempts"] = {"t0": stray}
    write = cancel(doc)
    moved = project_from_document(step(doc, write)).clips[0].attempts["t0"]
    clip = project_from_document(doc).clips[0]
    assert (moved.status, moved.lease) == ("cancelled", clip.lease)
    assert moved.watch_start() == clip.watch_start()  # the clip's watch, not an older one
    assert step(doc, write)[markers.ATTEMPTS_DUE] == T0
    drop = reconciler.drop_stray_attempt("p1", clip, "t0")
    assert drop is not None
    dropped = step(doc, drop)
    assert not matches(dropped, write.filter)
    again = step(dropped, cancel(dropped))
    assert project_from_document(again).clips[0].attempts["t0"].lease == clip.lease

    # (B) An attempts.T without a lease whose follow never ended: it gets the clip's lease,
    # field by field, so its task is followed after the cancel.
    doc = charged_processing()
    ended = {"status": "failed", "error": {"code": "taskReplaced", "message": "x"}}
    doc["clips"]["0"]["attempts"] = {"t0": ended}
    after = step(doc, cancel(doc))
    followed = project_from_document(after).clips[0].attempts["t0"]
    clips_lease = project_from_document(doc).clips[0].lease
    # It stands for the cancelled clip's followed task now: ``cancelled``, as a new entry.
    assert (followed.status, followed.lease) == ("cancelled", clips_lease)
    assert followed.error == ended["error"]
    assert project_from_document(after).clips[0].charge_in_flight("t0")
    assert after[markers.ATTEMPTS_DUE] == T0
    # Guarded on the entry as read: one leased since matches nothing.
    leased = dict(doc, clips={"0": dict(doc["clips"]["0"], attempts={"t0": ended | {
        "lease": {"token": "f9", "until": T0}}})})  # fmt: skip
    assert not matches(leased, cancel(doc).filter)
    # An end recorded before the old api's rewatch is no last word: the clip's chain
    # followed the task again since, and follows it on from the attempt.
    final = dict(doc, clips={"0": dict(doc["clips"]["0"], attempts={"t0": ended | {
        "end_recorded": True}})})  # fmt: skip
    write = cancel(final)
    refollowed = project_from_document(step(final, write)).clips[0].attempts["t0"]
    assert (refollowed.lease, refollowed.end_recorded) == (clips_lease, False)
    assert not matches(doc, write.filter)  # guarded on that end as read
    # A video stays the task's last word.
    video = {"status": "success", "video_url": "https://v/0.mp4", "cost": 0.3}
    done = dict(doc, clips={"0": dict(doc["clips"]["0"], attempts={"t0": video})})
    assert step(done, cancel(done))["clips"]["0"]["attempts"]["t0"] == video


def charged(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a charge ``c<scene>`` on each clip (its tenant has a ledger)."""
    clips = {
        scene: dict(clip, charge=CHARGE | {"id": f"c{scene}"})
        for scene, clip in doc["clips"].items()
    }
    return dict(doc, clips=clips)


def clip_of(doc: dict[str, Any], scene: int) -> ClipState:
    return project_from_document(doc).clips[scene]


def test_a_write_no_message_stands_behind_marks_its_settlement_owed_in_itself() -> None:
    """A reconciler's pass or a cancel: the end and the mark are one update, so no crash
    comes between them; a write that settles nothing is left as it is."""
    doc = charged(step(new_doc(), to_processing(new_doc(), 0)))
    end = to_terminal(0, VIDEO)

    owed = owing.owed(end, clip_of(doc, 0), now=T0)

    after = step(doc, owed)
    assert after[markers.SETTLE_OWED] == ["0:c0:t0"]
    assert after[markers.SETTLE_DUE] == T0
    assert after["clips"]["0"]["status"] == "success"
    assert owed.settle == end.settle
    renewal = chainleases.renew_lease("p1", 0, token="k0", until_was=T0, until=T0 + LEASE)
    assert owing.owed(renewal, clip_of(doc, 0), now=T0) == renewal
    # A second clip's end owed later: listed too, the earliest mark kept.
    later = owing.owed(to_terminal(1, BROKEN), clip_of(doc, 1), now=T0 + LEASE)
    both = step(after, later)
    assert both[markers.SETTLE_OWED] == ["0:c0:t0", "1:c1:t1"]
    assert both[markers.SETTLE_DUE] == T0
    assert owing.owed_of("1:c1.1:t1:late") == (1, "c1.1:t1:late", "t1")


def test_an_end_owed_is_guarded_on_the_charge_it_settles_as_read() -> None:
    """The mark names the settlement of the charge the writer read; a retry under another
    charge between its read and its write makes the write match nothing (read again)."""
    doc = charged(step(new_doc(), to_processing(new_doc(), 0)))
    read = clip_of(doc, 0)
    retried = dict(doc, clips=dict(doc["clips"], **{"0": dict(doc["clips"]["0"], charge=CHARGE)}))

    owed = owing.owed(to_terminal(0, VIDEO), read, now=T0)

    assert owed.filter["clips.0.charge.id"] == "c0"
    assert not matches(retried, owed.filter)
    assert matches(doc, owed.filter)


def test_an_end_of_a_task_without_a_charge_is_not_owed_and_stays_without_one() -> None:
    """A tenant without a ledger pays nothing for a mark: nothing settles on a ledger. The
    write is guarded on the clip still holding none (a retry under a charge since: read
    again)."""
    doc = step(new_doc(), to_processing(new_doc(), 0))
    end = to_terminal(0, VIDEO)

    owed = owing.owed(end, clip_of(doc, 0), now=T0)

    after = step(doc, owed)
    assert markers.SETTLE_OWED not in after
    assert markers.SETTLE_DUE not in after
    assert owed.update == end.update
    assert not matches(charged(doc), owed.filter)


def test_an_owed_end_that_moves_its_charge_is_guarded_where_the_charge_was() -> None:
    """An earlier task's video taken by the open clip settles on the clip's charge after the
    write, which was the attempt's before it: the mark is guarded there, and names it."""
    doc = step(new_doc(1), to_processing(new_doc(1), 0))
    doc["clips"]["0"]["attempts"] = {"t8": {"status": "processing", "charge": CHARGE}}
    write = lateresults.late_result(
        "p1", clip_of(doc, 0), "t8", VIDEO, now=T0, correlation_id=None, log_size=LOG
    )
    assert write is not None
    assert write.settle_from == "clips.0.attempts.t8.charge"

    owed = owing.owed(write, clip_of(doc, 0), now=T0)

    assert owed.filter["clips.0.attempts.t8.charge.id"] == "c1"
    after = step(doc, owed)
    assert after[markers.SETTLE_OWED] == ["0:c1:t8:late"]
    assert after["clips"]["0"]["charge"] == CHARGE


def test_the_settle_sweep_unmarks_only_the_owed_list_it_read() -> None:
    doc = charged(new_doc())
    doc = step(doc, owing.owed(to_terminal(0, VIDEO), clip_of(doc, 0), now=T0))
    claim = owing.claim_owed("p1", due_at=T0, now=T0 + LEASE)
    claimed = step(doc, claim)
    assert claimed[markers.SETTLE_DUE] == T0 + LEASE
    assert find_one_and_update(claimed, claim.filter, claim.update) is None  # taken once

    owed_since = step(claimed, owing.owed(to_terminal(1, BROKEN), clip_of(doc, 1), now=T0 + LEASE))
    read_one = owing.owed_swept("p1", owed_as_read=["0:c0:t0"], claimed=T0 + LEASE)
    assert find_one_and_update(owed_since, *_of(read_one)) is None
    swept = step(
        owed_since, owing.owed_swept("p1", owed_as_read=["0:c0:t0", "1:c1:t1"], claimed=T0 + LEASE)
    )
    assert markers.SETTLE_OWED not in swept
    assert markers.SETTLE_DUE not in swept


def _of(write: Write) -> tuple[dict[str, Any], dict[str, Any]]:
    return write.filter, write.update


def test_a_mark_without_entries_is_unmarked_too_unless_an_entry_came() -> None:
    """No writer marks without an entry, but a hand's edit can: the sweep that read none
    removes it all the same, as long as none was owed since."""
    doc = dict(charged(new_doc()), **{markers.SETTLE_DUE: T0})
    claim = owing.claim_owed("p1", due_at=T0, now=T0 + LEASE)
    claimed = step(doc, claim)

    owed_since = step(claimed, owing.owed(to_terminal(0, VIDEO), clip_of(doc, 0), now=T0 + LEASE))
    read_none = owing.owed_swept("p1", owed_as_read=[], claimed=T0 + LEASE)
    assert find_one_and_update(owed_since, *_of(read_none)) is None
    swept = step(claimed, read_none)
    assert markers.SETTLE_OWED not in swept
    assert markers.SETTLE_DUE not in swept


def test_a_stalled_sweep_never_unmarks_an_entry_owed_again_after_another_sweep() -> None:
    """Sweep A claims and stalls past the grace; sweep B claims, settles and unmarks; the
    same end is owed again (the clip watched again under the same charge and timed out
    again). A's unmark, whose list as read equals the new one, leaves it: it is guarded on
    A's claim too."""
    timed_out = TaskFailed(code=retries.TIMED_OUT, message="no end in time")
    doc = charged(step(new_doc(), to_processing(new_doc(), 0)))
    doc = step(doc, owing.owed(to_terminal(0, timed_out), clip_of(doc, 0), now=T0))
    first = T0 + LEASE
    claimed_by_a = step(doc, owing.claim_owed("p1", due_at=T0, now=first))
    second = first + LEASE
    claimed_by_b = step(claimed_by_a, owing.claim_owed("p1", due_at=first, now=second))
    swept_by_b = step(
        claimed_by_b, owing.owed_swept("p1", owed_as_read=["0:c0:t0"], claimed=second)
    )
    clip = clip_of(swept_by_b, 0)
    rewatched = step(swept_by_b, retries.rewatch(
        "p1", "tenant-a", clip, token="k8", now=second, lease_until=second + LEASE,
        correlation_id=None, log_size=LOG, charge=clip.charge,
    ))  # fmt: skip
    again = second + LEASE
    owed_again = step(
        rewatched, owing.owed(to_terminal(0, timed_out), clip_of(rewatched, 0), now=again)
    )
    assert owed_again[markers.SETTLE_OWED] == ["0:c0:t0"]

    stalled = owing.owed_swept("p1", owed_as_read=["0:c0:t0"], claimed=first)

    assert find_one_and_update(owed_again, *_of(stalled)) is None
    assert owed_again[markers.SETTLE_DUE] == again  # due for the next sweep


def test_a_retry_is_guarded_on_the_owed_list_as_read() -> None:
    """A settlement owed after the retry's read (its clip's, maybe, which the retry would
    then no longer find on the clip) makes the retry match nothing: it reads again."""
    timed_out = TaskFailed(code=retries.TIMED_OUT, message="no end in time")
    doc = charged(step(new_doc(), to_processing(new_doc(), 0)))
    doc = step(doc, to_terminal(0, timed_out))
    clip = clip_of(doc, 0)
    rewatch = retries.rewatch(
        "p1", "tenant-a", clip, token="k8", now=T0, lease_until=T0 + LEASE,
        correlation_id=None, log_size=LOG,
    )  # fmt: skip

    guarded = owing.owing_as_read(rewatch, [])

    owed_since = step(doc, owing.owed(to_terminal(1, BROKEN), clip_of(doc, 1), now=T0))
    assert not matches(owed_since, guarded.filter)
    assert matches(doc, guarded.filter)
    read_again = owing.owing_as_read(rewatch, ["1:c1:t1"])
    assert step(owed_since, read_again)["clips"]["0"]["status"] == "processing"


# --- the late follow of a task our ceiling gave up on ----------------------------------------

TIMED_OUT = TaskFailed(code=retries.TIMED_OUT, message="no end in time")
FOLLOW_UNTIL = T0 + timedelta(hours=24)


def timed_out_followed(doc: dict[str, Any], *, token: str = "k0") -> Write:  # noqa: S107
    """Our ceiling on the processing clip 0 of chain ``token`` (as :meth:`ProjectStore.time_out`
    builds it from the clip as read): its task followed late by that chain."""
    clip = clip_of(doc, 0)
    followed = clip.model_copy(
        update={"status": ClipStatus.FAILED, "lease": Lease(token=token, until=T0 + LEASE)}
    ).as_attempt()
    return to_terminal(
        0, TIMED_OUT, token=token, follow=followed.model_copy(update={"follow_until": FOLLOW_UNTIL})
    )


def late_at(doc: dict[str, Any], result: Any, now: datetime) -> Write | None:
    return lateresults.late_result(
        "p1", clip_of(doc, 0), "t0", result, now=now, correlation_id=None, log_size=LOG
    )


def test_the_ceiling_fails_the_clip_and_its_task_stays_followed_late_with_its_charge() -> None:
    doc = charged_processing()

    write = timed_out_followed(doc)
    after = step(doc, write)

    clip = clip_of(after, 0)
    assert (clip.status, clip.lease, clip.charge) == (ClipStatus.FAILED, None, None)
    assert clip.error == {"code": retries.TIMED_OUT, "message": "no end in time"}
    followed = clip.attempts["t0"]
    assert (followed.status, followed.follow_until, followed.submitted_at) == (
        ClipStatus.FAILED,
        FOLLOW_UNTIL,
        T0,
    )
    assert followed.lease == Lease(token="k0", until=T0 + LEASE)
    assert followed.charge == Charge.model_validate(CHARGE)
    # The clip's end settles nothing: Runware may still run and bill the task, so its charge
    # is held in flight until the follow's end.
    assert write.settle is None
    assert clip.moved_charge("t0")
    assert clip.charge_in_flight("t0")
    assert charges.settlements(clip, "t0") == []
    assert after[markers.ATTEMPTS_DUE] == T0  # the attempts reconciler re-arms a lost chain
    # The chain renews its lease there; the project finished (its one clip ended).
    in_attempt = chainleases.renew_lease(
        "p1", 0, token="k0", until_was=T0 + LEASE, until=T0 + 2 * LEASE, replaced_task="t0"
    )
    assert matches(after, in_attempt.filter)
    assert clip.view().attempts is None  # the clip says it all until a video comes
    # Guarded on the charge as read, and on no entry of the task (a stray's, say).
    other = dict(doc, clips={"0": dict(doc["clips"]["0"], charge=CHARGE | {"id": "c9"})})
    assert not matches(other, write.filter)
    assert not matches(after, write.filter)
    # Without a charge (no ledger), the follow holds nothing; the end settles nothing either.
    free = step(new_doc(1), to_processing(new_doc(1), 0))
    plain = step(free, timed_out_followed(free))
    assert clip_of(plain, 0).attempts["t0"].charge is None
    assert not clip_of(plain, 0).charge_in_flight("t0")


@pytest.mark.parametrize("end", ["video", "runware failed", "window over"])
def test_the_late_follows_end_settles_the_held_charge_once_and_is_its_last_word(end: str) -> None:
    doc = step(charged_processing(), timed_out_followed(charged_processing()))
    result, now = {
        "video": (VIDEO, T0 + LEASE),
        "runware failed": (BROKEN, T0 + LEASE),
        "window over": (TIMED_OUT, FOLLOW_UNTIL),
    }[end]

    write = late_at(doc, result, now)

    assert write is not None
    after = step(doc, write)
    clip = clip_of(after, 0)
    ended = clip.attempts["t0"]
    video = end == "video"
    assert ended.status is (ClipStatus.SUCCESS if video else ClipStatus.FAILED)
    assert (ended.lease, ended.end_recorded, ended.late) == (None, True, False)
    assert clip.status is ClipStatus.FAILED  # a terminal clip never changes
    # Its task's end, on the charge it held: billed (the estimate replaced by the cost) or
    # freed; as the repair path finds it again (a no-op once made).
    charge = Charge.model_validate(CHARGE)
    settled = Settlement("t0", True, video, 0.5 if video else None)
    assert write.settle == ("clips.0.attempts.t0.charge", settled)
    assert charges.settlements(clip, "t0") == [(charge, settled)]
    assert not clip.charge_in_flight("t0")
    assert after["cost"]["usd"] == (0.5 if video else 0)
    # A video is told (one ``clip.attempt_succeeded``); a failure is history (no ``seq``).
    assert after["seq"] == doc["seq"] + video
    if video:
        assert isinstance(materialize(head(after), after["events"])[-1], AttemptSucceeded)
    # Nothing is followed again, nor recorded twice.
    assert late_at(after, VIDEO if video else BROKEN, now) is None
    follow = follows.follow_given_up("p1", clip, "t0", token="f1", now=now, until=now + LEASE)
    assert follow is None


def test_the_clips_own_ceiling_again_does_not_end_its_late_follow() -> None:
    doc = step(charged_processing(), timed_out_followed(charged_processing()))

    # The check that decided the ceiling, redelivered; a fork of the clip's chain; the
    # reconciler beside it: the clip's ceiling, not the follow's (which ends at its end).
    assert late_at(doc, TIMED_OUT, T0 + LEASE) is None
    assert late_at(doc, TIMED_OUT, FOLLOW_UNTIL) is not None


def test_a_rewatch_takes_the_reservation_back_from_the_late_follow() -> None:
    doc = step(charged_processing(), timed_out_followed(charged_processing()))
    clip = clip_of(doc, 0)
    later = T0 + LEASE
    common: dict[str, Any] = {
        "token": "k9", "now": later, "lease_until": later + LEASE, "correlation_id": None,
        "log_size": LOG,
    }  # fmt: skip

    write = retries.rewatch("p1", "tenant-a", clip, **common)
    after = step(doc, write)

    again = clip_of(after, 0)
    assert (again.status, again.charge, again.attempts) == (
        ClipStatus.PROCESSING,
        Charge.model_validate(CHARGE),
        {},
    )
    assert charges.settlements(again, "t0") == []  # in flight, on the clip again
    # Its end settles that charge by the same key the follow's end would have.
    video = step(after, to_terminal(0, VIDEO))
    charge = Charge.model_validate(CHARGE)
    assert charges.settlements(clip_of(video, 0), "t0") == [
        (charge, Settlement("t0", True, True, 0.5))
    ]
    # The follow's end since the read: the rewatch matches nothing (its retry reads again).
    ended = late_at(doc, BROKEN, later)
    assert ended is not None
    assert not matches(step(doc, ended), write.filter)
    # A retry never reserves a second charge for it.
    reserved = Charge(id="c2", usd=0.5, day="2026-12-02", month="2026-12")
    with pytest.raises(ValueError, match="reserves no other"):
        retries.rewatch("p1", "tenant-a", clip, charge=reserved, **common)


def test_a_retry_taking_the_late_follows_video_names_the_key_it_was_billed_under() -> None:
    doc = step(charged_processing(), timed_out_followed(charged_processing()))
    video = late_at(doc, VIDEO, T0 + LEASE)
    assert video is not None
    billed = step(doc, video)
    assert video.settle is not None

    take = retries.take_late_video(
        "p1", "tenant-a", clip_of(billed, 0), now=T0 + LEASE, lease_until=T0 + 2 * LEASE,
        correlation_id=None, log_size=LOG,
    )  # fmt: skip

    assert take is not None
    taken = clip_of(step(billed, take), 0)
    assert (taken.status, taken.charge, taken.late) == (
        ClipStatus.SUCCESS,
        Charge.model_validate(CHARGE),
        False,
    )
    # Its end is the one the video settled when it came (a no-op), never billed again late.
    assert charges.settlements(taken, "t0") == [(Charge.model_validate(CHARGE), video.settle[1])]


def test_a_cost_its_events_do_not_tell_is_never_written() -> None:
    """A replay rebuilds the project's cost from the events (``materialize``): a write that
    adds a video's cost without the event telling it is refused as it is built."""
    update = Update()
    update.cost(0.25)

    with pytest.raises(UntoldCost, match="adds 1 known and 0 unknown costs, its events tell 0"):
        update.build({"_id": "p1"}, now=T0, log_size=LOG)
