"""The WebSocket messages the notifier renders are exactly what its message models describe."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from reelflow_common.domain import ClipStatus, Counts, ProjectStatus
from reelflow_common.messages import (
    AttemptStored,
    ClipStored,
    ClipUpdated,
    ClipView,
    Event,
    ProjectFinished,
)
from reelflow_notifier.wire import (
    AttemptStoredMessage,
    ClipStoredMessage,
    ClipUpdatedMessage,
    ErrorMessage,
    ProjectFinishedMessage,
    error_message,
    event_message,
    event_text,
    unsubscribed_message,
)

NOW = datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)
COUNTS = Counts(total_clips=3, completed=1, pending=0, failed=1, cancelled=1)
CLIP = ClipView(
    task_uuid="9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f",
    scene_index=1,
    status=ClipStatus.FAILED,
    error={"code": "providerError", "message": "boom"},
    submitted_at=NOW,
    completed_at=NOW,
)
EVENTS: list[Event] = [
    ClipUpdated(project_id="p1", tenant_id="t1", seq=4, clip=CLIP, counts=COUNTS),
    ClipUpdated(
        project_id="p1",
        tenant_id="t1",
        seq=5,
        clip=CLIP.model_copy(
            update={
                "status": ClipStatus.SUCCESS,
                "video_url": "https://v/1.mp4",
                "cost": 0.4,
            }
        ),
        counts=COUNTS,
        replaces_task_uuid="4e2a6b8c-1d3f-4a5b-9c7d-2e4f6a8b0c1d",
        correlation_id="req-1",
    ),
    ProjectFinished(
        project_id="p1", tenant_id="t1", seq=6, status=ProjectStatus.PARTIAL, counts=COUNTS
    ),
    ClipStored(
        project_id="p1",
        tenant_id="t1",
        seq=7,
        counts=COUNTS,
        scene_index=0,
        task_uuid="9d1c2f0e-5a7b-4c3d-8e9f-0a1b2c3d4e5f",
        stored_url="https://reelflow.test/v1/videos/k?sig=x",
        size_bytes=1234,
    ),
    AttemptStored(
        project_id="p1",
        tenant_id="t1",
        seq=8,
        counts=COUNTS,
        scene_index=0,
        task_uuid="4e2a6b8c-1d3f-4a5b-9c7d-2e4f6a8b0c1d",
        stored_url="https://reelflow.test/v1/videos/k2?sig=y",
        size_bytes=4321,
    ),
]
MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["type"].default: model
    for model in (
        ClipUpdatedMessage,
        ProjectFinishedMessage,
        ClipStoredMessage,
        AttemptStoredMessage,
    )
}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.message_type}-{e.seq}")
def test_an_event_message_is_its_model_written_as_json(event: Event) -> None:
    rendered = event_message(event)
    model = MODELS[event.message_type]

    parsed = model.model_validate(rendered)  # extra="forbid": no field the model lacks

    assert json.dumps(parsed.model_dump(mode="json", exclude_none=True)) == json.dumps(
        rendered
    )  # same fields, same order
    assert rendered["counts"]["failed"] == COUNTS.failed + COUNTS.cancelled
    assert "tenant_id" not in rendered
    assert "correlation_id" not in rendered


def test_the_notices_are_their_models() -> None:
    assert error_message("bad") == {"type": "error", "message": "bad"}
    assert ErrorMessage.model_validate(error_message("gone", project_id="p")).project_id == "p"
    assert unsubscribed_message("p") == {"type": "unsubscribed", "project_id": "p"}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.message_type}-{e.seq}")
def test_an_event_is_encoded_once_for_every_watcher(event: Event) -> None:
    first = event_text(event)

    assert event_text(event) is first  # the same text object: no second encoding
    assert json.loads(first) == event_message(event)
    # Another event under the same message id but another seq is another text.
    assert json.loads(event_text(event.model_copy(update={"seq": event.seq + 1})))["seq"] == (
        event.seq + 1
    )
