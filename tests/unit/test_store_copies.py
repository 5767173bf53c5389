"""reelflow's copy of a video in the project document: one guarded update, never a status change."""

from __future__ import annotations

from typing import Any

from reelflow_common.broker import Publisher
from reelflow_common.messages import ClipStored, ClipUpdated, Message, ProjectFinished
from reelflow_common.store import Change, ProjectStore, TaskSucceeded
from reelflow_common.store.documents import project_from_document
from reelflow_common.store.eventlog import about_scene, materialize
from reelflow_common.store.transitions import markers, videocopies
from reelflow_common.store.transitions.write import Write
from reelflow_common.tracking.recorder import ClipRecorder, copies_due
from tests.unit.mongo_like import matches
from tests.unit.test_store_transitions import (
    BROKEN,
    LOG,
    T0,
    VIDEO,
    finish,
    head,
    new_doc,
    step,
    to_processing,
    to_terminal,
)

KEY = "videos/p1/0/t0.mp4"


def stored(scene: int = 0, task: str | None = None) -> Write:
    return videocopies.video_stored(
        "p1",
        scene,
        task or f"t{scene}",
        key=KEY,
        size_bytes=5893,
        sha256="ab" * 32,
        content_type="video/mp4",
        stored_url="/v1/videos/videos/p1/0/t0.mp4?expires=1&signature=x",
        now=T0,
        correlation_id=None,
        log_size=LOG,
    )


def failed(scene: int = 0) -> Write:
    return videocopies.copy_failed(
        "p1",
        scene,
        f"t{scene}",
        key=KEY,
        code="providerLinkExpired",
        message="gone",
        attempts=3,
        now=T0,
    )


def finished_project() -> dict[str, Any]:
    doc = new_doc(1)
    doc = step(doc, to_processing(doc, 0))
    doc = step(doc, to_terminal(0, VIDEO))
    return step(doc, finish(doc))


def test_a_stored_video_adds_the_asset_and_one_event_and_changes_no_status() -> None:
    doc = finished_project()

    after = step(doc, stored())

    assert after["status"] == doc["status"] == "completed"
    assert after["counts"] == doc["counts"]
    assert after["clips"]["0"]["status"] == "success"
    # Runware's URL stays
    assert project_from_document(after).clips[0].video_url == "https://v/0.mp4"
    assert after["clips"]["0"]["asset"]["key"] == KEY
    events = materialize(head(after), after["events"])
    assert [type(e) for e in events] == [ClipUpdated, ClipUpdated, ProjectFinished, ClipStored]
    event = events[-1]
    assert isinstance(event, ClipStored)
    assert (event.seq, event.scene_index, event.task_uuid, event.size_bytes) == (4, 0, "t0", 5893)
    assert event.counts == events[-2].counts
    clip = project_from_document(after).clips[0]
    assert clip.stored_key == KEY


def test_a_second_copy_writes_nothing() -> None:
    after = step(finished_project(), stored())
    assert not matches(after, stored().filter)
    assert not matches(after, failed().filter)  # nor does a late failure undo it


def test_only_a_success_of_that_task_can_be_stored() -> None:
    doc = new_doc(2)
    doc = step(doc, to_processing(doc, 0))
    assert not matches(doc, stored().filter)  # still processing
    broken = step(doc, to_terminal(0, BROKEN))
    assert not matches(broken, stored().filter)  # failed: no video to keep
    success = step(doc, to_terminal(0, VIDEO))
    assert not matches(success, stored(task="t9").filter)  # another task's video


def test_a_failed_copy_is_listed_and_a_later_copy_lists_it_no_more() -> None:
    doc = finished_project()

    given_up = step(doc, failed())
    assert given_up["seq"] == doc["seq"]  # history, no public change
    assert given_up[markers.ASSET_FAILURES] == [0]
    assert given_up["clips"]["0"]["asset"]["status"] == "failed"
    assert project_from_document(given_up).clips[0].stored_key is None

    retried = step(given_up, stored())
    assert retried[markers.ASSET_FAILURES] == []
    assert retried["clips"]["0"]["asset"]["status"] == "stored"


def test_a_success_calls_for_a_copy_unless_the_log_shows_it_stored() -> None:
    doc = finished_project()
    events = materialize(head(doc), doc["events"])
    (command,) = copies_due("p1", events)
    assert (command.scene_index, command.task_uuid, command.video_url) == (
        0,
        "t0",
        "https://v/0.mp4",
    )
    after = step(doc, stored())
    assert copies_due("p1", about_scene(materialize(head(after), after["events"]), 0)) == []


class _Recorded(ProjectStore):
    """A store whose ``record`` answers a given change."""

    def __init__(self, change: Change) -> None:  # no database
        self.change = change

    async def record(self, *_args: Any, **_kwargs: Any) -> Change:
        return self.change


class _Sent(Publisher):
    """A publisher that keeps what it was given."""

    def __init__(self) -> None:  # no broker
        self.sent: list[tuple[str, Message]] = []

    async def send(
        self,
        work_queue: str,
        message: Message,
        *,
        delay_s: float | None = None,
        to: str | None = None,
    ) -> None:
        self.sent.append((work_queue, message))

    async def publish_event(self, event: Message) -> None:
        pass


async def test_only_the_writer_that_applied_the_success_sends_its_copy() -> None:
    doc = finished_project()
    events = materialize(head(doc), doc["events"])
    success = TaskSucceeded(video_url="https://v/0.mp4", video_uuid="v0", cost=0.1)
    for applied, copies in ((True, 1), (False, 0)):
        publisher = _Sent()
        recorder = ClipRecorder(_Recorded(Change(applied, events)), publisher, copies=True)
        await recorder.record("p1", 0, "t0", success)
        assert len(publisher.sent) == copies, f"applied={applied}"
