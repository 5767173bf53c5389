"""reelflow keeps a copy of every video a tenant is billed for, an attempt's too.

A video recorded in a clip's ``attempts`` (a cancelled clip's task that finished at
Runware, a replaced task's late video) is copied like a clip's: the same ``StoreVideo``,
recorded on that attempt by one guarded update that changes nothing of the clip itself.
"""

from __future__ import annotations

from typing import Any

from reelflow_common.admin import assets
from reelflow_common.domain import ClipStatus
from reelflow_common.messages import AttemptStored, AttemptSucceeded
from reelflow_common.storage.links import VideoLinks
from reelflow_common.store.documents import project_from_document
from reelflow_common.store.eventlog import materialize
from reelflow_common.store.transitions import markers, retries, videocopies
from reelflow_common.store.transitions.write import Write
from reelflow_common.tracking.copysweep import uncopied
from reelflow_common.tracking.recorder import copies_due
from tests.unit.mongo_like import matches
from tests.unit.test_store_copies import stored as clip_stored
from tests.unit.test_store_transitions import (
    BROKEN,
    CHARGE,
    LEASE,
    LOG,
    T0,
    VIDEO,
    cancel,
    charged_processing,
    finish,
    finished_failed,
    head,
    late,
    new_doc,
    step,
)

KEY = "videos/p1/0/t0.mp4"
URL = "/v1/videos/videos/p1/0/t0.mp4?expires=1&signature=x"


def attempt_stored(task: str = "t0", scene: int = 0) -> Write:
    return videocopies.video_stored(
        "p1",
        scene,
        task,
        key=KEY,
        size_bytes=5893,
        sha256="ab" * 32,
        content_type="video/mp4",
        stored_url=URL,
        now=T0,
        correlation_id=None,
        log_size=LOG,
        of_attempt=True,
    )


def attempt_failed(task: str = "t0") -> Write:
    return videocopies.copy_failed(
        "p1",
        0,
        task,
        key=KEY,
        code="providerLinkExpired",
        message="gone",
        attempts=3,
        now=T0,
        of_attempt=True,
    )


def cancelled_then_finished() -> dict[str, Any]:
    """A charged processing clip cancelled; its task then finished at Runware: the video, and
    its cost, are in ``attempts.t0`` (the tenant pays), the clip stays cancelled."""
    doc = charged_processing()
    doc = step(doc, cancel(doc))
    doc = step(doc, finish(doc))
    write = late(doc, VIDEO)
    assert write is not None
    return step(doc, write)


def test_an_attempts_video_is_stored_on_that_attempt_and_nothing_of_the_clip_changes() -> None:
    doc = cancelled_then_finished()
    assert doc["clips"]["0"]["status"] == "cancelled"
    assert doc[markers.COPY_DUE] == T0  # the copy sweep looks for it too
    assert not matches(doc, clip_stored().filter)  # the clip's own copy write matches nothing

    after = step(doc, attempt_stored())

    clip_before = {k: v for k, v in doc["clips"]["0"].items() if k != "attempts"}
    assert {k: v for k, v in after["clips"]["0"].items() if k != "attempts"} == clip_before
    assert (after["status"], after["counts"], after["cost"]) == (
        doc["status"],
        doc["counts"],
        doc["cost"],
    )
    attempt = project_from_document(after).clips[0].attempts["t0"]
    assert attempt.stored_key == KEY
    assert attempt.charge is not None  # untouched
    assert attempt.charge.id == CHARGE["id"]
    event = materialize(head(after), after["events"])[-1]
    assert isinstance(event, AttemptStored)
    assert (event.seq, event.scene_index, event.task_uuid, event.stored_url) == (
        doc["seq"] + 1,
        0,
        "t0",
        URL,
    )
    # Once: a duplicate copy, and a late failure, write nothing.
    assert not matches(after, attempt_stored().filter)
    assert not matches(after, attempt_failed().filter)


def test_only_an_attempt_with_a_video_can_be_stored() -> None:
    doc = charged_processing()
    followed = step(doc, cancel(doc))  # attempts.t0: cancelled, followed, no video yet
    assert not matches(followed, attempt_stored().filter)
    failure = late(followed, BROKEN)
    assert failure is not None
    ended = step(followed, failure)  # no video: nothing to keep
    assert not matches(ended, attempt_stored().filter)
    assert not matches(cancelled_then_finished(), attempt_stored(task="t9").filter)


def test_the_attempt_shows_a_fresh_signed_url_of_its_copy() -> None:
    links = VideoLinks(b"secret", ttl_s=3600)
    clip = project_from_document(step(cancelled_then_finished(), attempt_stored())).clips[0]

    (shown,) = clip.view(links=links).attempts or []

    assert shown.task_uuid == "t0"
    assert shown.stored_url is not None
    expires, signature = _expiry_and_signature(shown.stored_url)
    assert links.check(KEY, expires=expires, signature=signature) is True
    assert clip.view(links=links).stored_url is None  # the cancelled clip has no video


def _expiry_and_signature(url: str) -> tuple[int, str]:
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    return int(query["expires"]), query["signature"]


def test_a_failed_copy_of_an_attempt_is_marked_by_its_task_and_a_later_copy_clears_it() -> None:
    doc = cancelled_then_finished()

    given_up = step(doc, attempt_failed())
    assert given_up["seq"] == doc["seq"]  # history, no public change
    assert given_up[markers.ASSET_FAILURES] == ["t0"]
    attempt = project_from_document(given_up).clips[0].attempts["t0"]
    assert attempt.asset is not None
    assert attempt.asset.status == "failed"
    assert attempt.stored_key is None

    retried = step(given_up, attempt_stored())
    assert retried[markers.ASSET_FAILURES] == []


def test_an_attempts_video_calls_for_a_copy_like_a_clips() -> None:
    doc = cancelled_then_finished()
    events = materialize(head(doc), doc["events"])
    assert isinstance(events[-1], AttemptSucceeded)

    (command,) = copies_due("p1", events[-1:])

    assert (command.scene_index, command.task_uuid, command.video_url) == (
        0,
        "t0",
        VIDEO.video_url,
    )
    after = step(doc, attempt_stored())
    assert copies_due("p1", materialize(head(after), after["events"])[-2:]) == []


def test_the_sweep_and_the_admin_see_an_attempts_video_until_it_is_stored() -> None:
    doc = cancelled_then_finished()
    project = project_from_document(doc)

    (video,) = uncopied(project)
    assert (video.task_uuid, video.of_attempt, video.video_url) == ("t0", True, VIDEO.video_url)
    (command,) = assets.retries(project)
    assert command.task_uuid == "t0"
    clip_row, attempt_row = assets.rows([project], failed_only=False)
    assert clip_row[2:4] == ("t0", "-")  # the cancelled clip: no video of its own
    assert attempt_row[2:4] == ("t0", "pending")
    assert attempt_row[-1].startswith("earlier task: ")

    failed = project_from_document(step(doc, attempt_failed()))
    (row,) = assets.rows([failed], failed_only=True)
    assert row[2:5] == ("t0", "failed", "3")
    assert uncopied(failed) == []  # given up on: the sweep leaves it to an operator
    assert [c.task_uuid for c in assets.retries(failed)] == ["t0"]

    kept = project_from_document(step(doc, attempt_stored()))
    assert uncopied(kept) == []
    assert assets.retries(kept) == []


def test_a_retry_that_takes_a_stored_late_video_keeps_its_copy() -> None:
    doc = finished_failed(new_doc(1))  # t0 timed out (or was not found): the clip stands for it
    video = late(doc, VIDEO)
    assert video is not None
    doc = step(doc, video)
    doc = step(doc, attempt_stored())
    clip = project_from_document(doc).clips[0]

    taken = retries.take_late_video(
        "p1", "tenant-a", clip, now=T0, lease_until=T0 + LEASE, correlation_id=None, log_size=LOG
    )
    assert taken is not None
    took = project_from_document(step(doc, taken)).clips[0]

    assert (took.status, took.task_uuid, took.stored_key) == (ClipStatus.SUCCESS, "t0", KEY)
    assert took.attempts == {}
    # Stored already: the clip's own copy write, should one come, matches nothing.
    assert not matches(step(doc, taken), clip_stored(task="t0").filter)
