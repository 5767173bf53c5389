"""Runware webhooks are hints: the poller asks Runware, a forged result changes nothing."""

from __future__ import annotations

import httpx
import pytest

from reelflow_devtools.launcher import Stack
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e


async def test_a_forged_webhook_changes_nothing_and_its_secret_is_in_no_log(
    shared_stack: Stack,
) -> None:
    key = await shared_stack.issue_key("tenant-webhook")
    secret = shared_stack.config.webhook_secret
    assert secret is not None
    async with httpx.AsyncClient(
        base_url=shared_stack.api_url, headers={"Authorization": f"Bearer {key}"}
    ) as api:
        created = (
            await api.post("/v1/projects", json={"scenes": [{"prompt": "never ends [sim:hang]"}]})
        ).json()
        project_id = created["project_id"]
        task_uuid = created["results"][0]["task_uuid"]

        async def processing() -> dict[str, object] | None:
            status = (await api.get(f"/v1/projects/{project_id}")).json()
            return status if status["results"][0]["status"] == "processing" else None

        await eventually_returns(
            processing, "the clip at Runware", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
        forged = {
            "data": [
                {
                    "taskType": "videoInference",
                    "taskUUID": task_uuid,
                    "status": "success",
                    "videoUUID": "b7db282d-2943-4f12-992f-77df3ad3ec71",
                    "videoURL": "http://evil.example/x.mp4",
                    "cost": 0.4,
                }
            ]
        }
        wrong = await api.post(
            "/v1/webhooks/runware/not-the-secret", params={"project_id": project_id}, json=forged
        )
        right = await api.post(
            f"/v1/webhooks/runware/{secret}",
            params={"project_id": project_id, "scene": 0},
            json=forged,
        )
        assert (wrong.status_code, right.status_code) == (404, 202)

        # The poller asks Runware about the task at once; Runware says it still runs.
        async def asked() -> bool | None:
            lines = shared_stack.logs("poller").splitlines()
            return (
                any("hint_without_result" in line and task_uuid in line for line in lines) or None
            )

        await eventually_returns(
            asked, "the hint checked with Runware", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
        status = (await api.get(f"/v1/projects/{project_id}")).json()

    assert status["results"][0]["status"] == "processing"
    assert status["clips"] == {task_uuid: "pending"}
    assert "evil.example" not in str(status)
    assert f"/v1/webhooks/runware/{secret}" not in shared_stack.logs("api")
    assert "/v1/webhooks/runware/***" in shared_stack.logs("api")
    for service in ("api", "submitter", "poller", "notifier"):
        assert secret not in shared_stack.logs(service), f"the secret in the {service}'s log"
