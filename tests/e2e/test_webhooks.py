"""Runware webhooks reach the same recording code as polls."""

from __future__ import annotations

import httpx
import pytest

from reelflow_devtools.launcher import Stack
from tests.e2e.stack import WEBHOOK_SECRET
from tests.waiting import eventually_returns

pytestmark = pytest.mark.e2e


async def test_a_webhook_finishes_a_clip_that_polling_would_never_see_finish(
    shared_stack: Stack,
) -> None:
    key = await shared_stack.issue_key("tenant-webhook")
    async with httpx.AsyncClient(
        base_url=shared_stack.api_url, headers={"Authorization": f"Bearer {key}"}
    ) as api:
        created = (
            await api.post("/v1/projects", json={"scenes": [{"prompt": "never ends [sim:hang]"}]})
        ).json()
        project_id = created["project_id"]
        task_uuid = created["results"][0]["task_uuid"]
        body = {
            "data": [
                {
                    "taskType": "videoInference",
                    "taskUUID": task_uuid,
                    "status": "success",
                    "videoUUID": "b7db282d-2943-4f12-992f-77df3ad3ec71",
                    "videoURL": "https://example.invalid/video.mp4",
                    "cost": 0.4,
                }
            ]
        }
        wrong = await api.post(
            "/v1/webhooks/runware/not-the-secret", params={"project_id": project_id}, json=body
        )
        assert wrong.status_code == 404

        right = await api.post(
            f"/v1/webhooks/runware/{WEBHOOK_SECRET}", params={"project_id": project_id}, json=body
        )
        assert right.status_code == 200

        async def succeeded() -> dict[str, object] | None:
            status = (await api.get(f"/v1/projects/{project_id}")).json()
            return status if status["completed"] == 1 else None

        status = await eventually_returns(
            succeeded, "the webhook's result recorded", 30, pause_s=0.2
        )
    assert status["clips"] == {task_uuid: "https://example.invalid/video.mp4"}
    assert status["status"] == "completed"
