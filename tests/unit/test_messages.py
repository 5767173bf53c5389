"""Messages survive the wire unchanged and carry their correlation ids as headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import (
    CheckClip,
    ClipUpdated,
    ClipView,
    ProjectFinished,
    RecordRunwareResult,
    SubmitClip,
)

COUNTS = Counts(total_clips=2, completed=1, pending=1, failed=0)


def test_command_round_trips_through_json() -> None:
    sent = CheckClip(
        project_id="p1",
        task_uuid="t1",
        attempt=3,
        submitted_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        correlation_id="req-1",
    )

    received = CheckClip.model_validate_json(sent.model_dump_json())

    assert received == sent
    assert received.submitted_at.tzinfo is not None


def test_event_with_nested_models_round_trips_through_json() -> None:
    sent = ClipUpdated(
        project_id="p1",
        tenant_id="tenant",
        seq=4,
        clip=ClipView(task_uuid="t1", scene_index=0, status=ClipStatus.SUCCESS, video_url="u"),
        counts=COUNTS,
    )

    assert ClipUpdated.model_validate_json(sent.model_dump_json()) == sent


def test_runware_body_round_trips_unchanged() -> None:
    body = {"data": [{"taskUUID": "t1", "status": "success", "videoURL": "https://v"}]}
    sent = RecordRunwareResult(project_id="p1", task_uuid="t1", body=body)

    assert RecordRunwareResult.model_validate_json(sent.model_dump_json()).body == body


def test_each_message_gets_its_own_id() -> None:
    assert SubmitClip(project_id="p", task_uuid="t").message_id != (
        SubmitClip(project_id="p", task_uuid="t").message_id
    )


def test_headers_carry_the_correlation_ids() -> None:
    message = SubmitClip(project_id="p1", task_uuid="t1", correlation_id="req-9")

    assert message.headers() == {"project_id": "p1", "task_uuid": "t1", "request_id": "req-9"}


def test_headers_leave_out_what_is_unknown() -> None:
    finished = ProjectFinished(
        project_id="p1", tenant_id="x", seq=9, status=ProjectStatus.PARTIAL, counts=COUNTS
    )

    assert finished.headers() == {"project_id": "p1"}


def test_clip_updated_headers_name_the_clip() -> None:
    updated = ClipUpdated(
        project_id="p1",
        tenant_id="x",
        seq=1,
        clip=ClipView(task_uuid="t7", scene_index=0, status=ClipStatus.PROCESSING),
        counts=COUNTS,
    )

    assert updated.headers()["task_uuid"] == "t7"


def test_unknown_fields_are_refused() -> None:
    body = SubmitClip(project_id="p", task_uuid="t").model_dump() | {"surprise": 1}

    with pytest.raises(ValidationError, match="surprise"):
        SubmitClip.model_validate(body)


def test_messages_are_immutable() -> None:
    message = SubmitClip(project_id="p", task_uuid="t")

    with pytest.raises(ValidationError):
        message.task_uuid = "other"  # type: ignore[misc]


def test_message_types_are_distinct() -> None:
    types = [m.message_type for m in (SubmitClip, CheckClip, RecordRunwareResult)]
    types += [m.message_type for m in (ClipUpdated, ProjectFinished)]

    assert len(set(types)) == len(types)
