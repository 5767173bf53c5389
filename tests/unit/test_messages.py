"""Messages survive the wire unchanged and carry their correlation ids as headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from reelflow_common.commands import first_check
from reelflow_common.domain import ClipRequest, ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import (
    EVENT_TYPES,
    AttemptStored,
    AttemptSucceeded,
    AttemptView,
    CheckClip,
    CheckClips,
    CheckHintedTasks,
    ClipStored,
    ClipUpdated,
    ClipView,
    Event,
    ProjectFinished,
    StoreVideo,
    SubmitClip,
    parse_event,
)
from reelflow_common.topology import HEADER_PROJECT_ID

COUNTS = Counts(total_clips=2, completed=1, pending=1, failed=0)
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def submit(**fields: object) -> SubmitClip:
    values: dict[str, object] = {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "scene_index": 0,
        "task_uuid": "t1",
        "token": "k1",
        "lease_until": T0,
        "model": "google:3@3",
        "request": ClipRequest(prompt="a fox", duration=4),
    }
    return SubmitClip.model_validate(values | fields)


def test_command_round_trips_through_json() -> None:
    sent = CheckClip(
        project_id="p1",
        scene_index=2,
        task_uuid="t1",
        token="k1",
        lease_until=T0,
        submitted_at=T0,
        watched_since=T0,
        model="google:3@3",
        duration=4,
        check=3,
        correlation_id="req-1",
    )

    received = CheckClip.model_validate_json(sent.model_dump_json())

    assert received == sent
    assert received.submitted_at.tzinfo is not None


def test_a_submit_carries_the_request_it_sends() -> None:
    sent = submit(attempt=2, first_attempt_at=T0)

    received = SubmitClip.model_validate_json(sent.model_dump_json())

    assert received == sent
    assert received.request.prompt == "a fox"


def test_event_with_nested_models_round_trips_through_json() -> None:
    sent = ClipUpdated(
        project_id="p1",
        tenant_id="tenant",
        seq=4,
        clip=ClipView(task_uuid="t1", scene_index=0, status=ClipStatus.SUCCESS, video_url="u"),
        counts=COUNTS,
    )

    assert ClipUpdated.model_validate_json(sent.model_dump_json()) == sent


def test_a_hint_names_tasks_as_canonical_uuids_and_nothing_else() -> None:
    task = uuid.uuid4()

    hint = CheckHintedTasks(project_id="p1", task_uuids=[str(task).upper()])

    assert hint.task_uuids == [str(task)]
    assert set(CheckHintedTasks.model_fields) - {
        "schema_version", "message_id", "correlation_id", "occurred_at"
    } == {"project_id", "scene_index", "task_uuids"}  # fmt: skip


@pytest.mark.parametrize("bad", [[], ["not-a-uuid"], ["\ud800"], [str(uuid.uuid4())] * 101])
def test_a_hint_refuses_what_is_not_a_list_of_task_uuids(bad: list[str]) -> None:
    with pytest.raises(ValidationError):
        CheckHintedTasks(project_id="p1", task_uuids=bad)


def test_each_message_gets_its_own_id_and_a_following_one_a_new_id() -> None:
    first = submit()

    following = first.following(attempt=2)

    assert submit().message_id != first.message_id
    assert following.message_id != first.message_id
    assert (following.attempt, following.task_uuid) == (2, first.task_uuid)


def test_headers_carry_the_correlation_ids() -> None:
    message = submit(correlation_id="req-9")

    assert message.headers() == {
        "project_id": "p1",
        "tenant_id": "tenant-a",
        "task_uuid": "t1",
        "correlation_id": "req-9",
    }


def test_headers_leave_out_what_is_unknown() -> None:
    finished = ProjectFinished(
        project_id="p1", tenant_id="x", seq=9, status=ProjectStatus.PARTIAL, counts=COUNTS
    )

    assert finished.headers() == {"project_id": "p1", "tenant_id": "x"}


def test_clip_updated_headers_name_the_clip() -> None:
    updated = ClipUpdated(
        project_id="p1",
        tenant_id="x",
        seq=1,
        clip=ClipView(task_uuid="t7", scene_index=0, status=ClipStatus.PROCESSING),
        counts=COUNTS,
    )

    assert updated.headers()["task_uuid"] == "t7"


def one_of_each_event() -> list[Event]:
    """An instance of every event type, each of its own project."""
    return [
        ClipUpdated(
            project_id="p-updated",
            tenant_id="x",
            seq=1,
            clip=ClipView(task_uuid="t7", scene_index=0, status=ClipStatus.PROCESSING),
            counts=COUNTS,
        ),
        ProjectFinished(
            project_id="p-finished",
            tenant_id="x",
            seq=9,
            status=ProjectStatus.PARTIAL,
            counts=COUNTS,
        ),
        ClipStored(
            project_id="p-stored",
            tenant_id="x",
            seq=10,
            counts=COUNTS,
            scene_index=0,
            task_uuid="t0",
            stored_url="/v1/videos/videos/p1/0/t0.mp4?expires=1&signature=x",
            size_bytes=5893,
        ),
        AttemptSucceeded(
            project_id="p-late",
            tenant_id="x",
            seq=11,
            counts=COUNTS,
            scene_index=0,
            attempt=AttemptView(task_uuid="t0", status=ClipStatus.SUCCESS, cost=0.4),
            correlation_id="req-1",
        ),
        AttemptStored(
            project_id="p-late-stored",
            tenant_id="x",
            seq=12,
            counts=COUNTS,
            scene_index=0,
            task_uuid="t0",
            stored_url="/v1/videos/videos/p1/0/t0.mp4?expires=1&signature=x",
            size_bytes=5893,
        ),
    ]


def test_every_event_type_is_built_below() -> None:
    assert {type(event) for event in one_of_each_event()} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", one_of_each_event(), ids=lambda event: event.message_type)
def test_every_event_names_its_project_in_a_header(event: Event) -> None:
    # The notifier skips an event of a project nobody watches by this header, unparsed.
    assert event.headers()[HEADER_PROJECT_ID] == event.project_id


def test_unknown_fields_are_refused() -> None:
    body = submit().model_dump() | {"surprise": 1}

    with pytest.raises(ValidationError, match="surprise"):
        SubmitClip.model_validate(body)


def test_messages_are_immutable() -> None:
    message = submit()

    with pytest.raises(ValidationError):
        message.task_uuid = "other"  # type: ignore[misc]


def test_message_types_are_distinct() -> None:
    types = [m.message_type for m in (SubmitClip, CheckClip, CheckHintedTasks, StoreVideo)]
    types += [m.message_type for m in (ClipUpdated, ProjectFinished, ClipStored, AttemptSucceeded)]
    types += [AttemptStored.message_type]

    assert len(set(types)) == len(types)


def test_one_table_parses_every_event_type() -> None:
    assert set(EVENT_TYPES) == {
        "clip.updated",
        "project.finished",
        "clip.stored",
        "clip.attempt_succeeded",
        "clip.attempt_stored",
    }
    for event in one_of_each_event():
        assert parse_event(event.message_type, event.model_dump_json()) == event
    assert parse_event("submit_clip", b"{}") is None


def test_a_check_carries_no_field_a_poller_of_the_release_before_would_refuse() -> None:
    # Messages forbid unknown fields: a new CheckClip field dead-letters every check an old
    # poller gets during a roll. Its lines name the project; the tenant is not on a check.
    check = first_check(submit(), submitted_at=T0, lease_until=T0, webhooks=False)

    assert "tenant_id" not in check.model_dump()
    assert "tenant_id" not in check.headers()


def test_a_check_says_it_is_a_late_follow_only_when_it_is_one() -> None:
    """``follow_until`` is left out of every other check: a poller of the release before, which
    refuses the field, takes them all; only a late follow's check (a poller's) carries it."""
    check = first_check(submit(), submitted_at=T0, lease_until=T0, webhooks=False)
    late = check.model_copy(update={"follow_until": T0})

    assert "follow_until" not in check.model_dump_json()
    assert "follow_until" not in CheckClips(checks=[check, check]).model_dump_json()
    assert CheckClip.model_validate_json(late.model_dump_json()).follow_until == T0
