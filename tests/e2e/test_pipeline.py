"""reelflow end to end: the four services as processes, the simulator at high speed."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions

from reelflow_devtools.launcher import Stack
from tests.e2e.stack import watch_until_finished
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e

FAST = "[sim:latency=10]"  # 0.5 s at the stack's speedup
SLOW = "[sim:latency=80]"  # 4 s
FAILING = "[sim:latency=20][sim:fail=timeoutProvider]"


def scenes(*directives: str) -> list[dict[str, Any]]:
    return [
        {"prompt": f"scene {index} of the test {directive}", "duration": 4}
        for index, directive in enumerate(directives)
    ]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_five_scene_project_is_watched_live_to_a_partial_finish(shared_stack: Stack) -> None:
    key = await shared_stack.issue_key("tenant-live")
    async with httpx.AsyncClient(base_url=shared_stack.api_url, headers=auth(key)) as api:
        created = await api.post(
            "/v1/projects",
            json={"title": "Lisbon", "scenes": scenes(FAST, SLOW, FAST, FAILING, SLOW)},
        )
        assert created.status_code == 202, created.text
        project_id = created.json()["project_id"]
        assert created.headers["location"] == f"/v1/projects/{project_id}"

        messages = await watch_until_finished(
            f"{shared_stack.ws_url}/v1/ws/projects/{project_id}?token={key}"
        )

        snapshot, *changes = messages
        assert snapshot["type"] == "snapshot"
        seqs = [message["seq"] for message in changes]
        assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(changes)))
        finished = changes[-1]
        assert finished["type"] == "project.finished"
        assert finished["status"] == "partial"
        counts = finished["counts"]
        assert (
            counts["total_clips"],
            counts["completed"],
            counts["pending"],
            counts["failed"],
        ) == (5, 4, 0, 1)
        final_status = {r["task_uuid"]: r["status"] for r in snapshot["project"]["results"]}
        for change in changes[:-1]:
            assert change["type"] == "clip.updated"
            final_status[change["clip"]["task_uuid"]] = change["clip"]["status"]
        assert sorted(final_status.values()) == [
            "failed",
            "success",
            "success",
            "success",
            "success",
        ]

        status = (await api.get(f"/v1/projects/{project_id}")).json()
        assert status["success"] is True
        assert (
            status["total_clips"],
            status["completed"],
            status["pending"],
            status["failed"],
        ) == (5, 4, 0, 1)
        assert status["all_complete"] is True
        assert status["status"] == "partial"
        failed = [r for r in status["results"] if r["status"] == "failed"]
        assert [r["scene_index"] for r in failed] == [3]
        assert failed[0]["error"]["code"] == "timeoutProvider"
        for result in status["results"]:
            expected = result.get("video_url") if result["status"] == "success" else "failed"
            assert status["clips"][result["task_uuid"]] == expected
            assert expected.startswith("http") or expected == "failed"

        async with httpx.AsyncClient() as plain:
            video = await plain.get(status["results"][0]["video_url"])
        assert video.headers["content-type"] == "video/mp4"

    for task_uuid in status["clips"]:
        truth = await shared_stack.sim_get(f"/__sim/tasks/{task_uuid}")
        assert truth["accepted"] is True
        assert truth["submissions"] == 1, truth


async def test_wait_returns_clips_that_finish_within_it(shared_stack: Stack) -> None:
    key = await shared_stack.issue_key("tenant-wait")
    async with httpx.AsyncClient(
        base_url=shared_stack.api_url, headers=auth(key), timeout=60
    ) as api:
        answer = await api.post(
            "/v1/projects", params={"wait": 30}, json={"scenes": scenes(FAST, FAST)}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["all_complete"] is True
    assert body["completed"] == 2
    assert all(url.startswith("http") for url in body["clips"].values())


async def test_wait_gives_up_at_its_deadline_with_what_has_finished(shared_stack: Stack) -> None:
    key = await shared_stack.issue_key("tenant-wait-short")
    async with httpx.AsyncClient(
        base_url=shared_stack.api_url, headers=auth(key), timeout=60
    ) as api:
        answer = await api.post(
            "/v1/projects", params={"wait": 1}, json={"scenes": scenes("[sim:hang]")}
        )
    assert answer.status_code == 202
    assert answer.json()["clips"] == {answer.json()["results"][0]["task_uuid"]: "pending"}


async def test_a_tenant_cannot_read_or_watch_another_tenants_project(shared_stack: Stack) -> None:
    owner = await shared_stack.issue_key("tenant-owner")
    stranger = await shared_stack.issue_key("tenant-stranger")
    async with httpx.AsyncClient(base_url=shared_stack.api_url) as api:
        created = await api.post("/v1/projects", headers=auth(owner), json={"scenes": scenes(FAST)})
        project_id = created.json()["project_id"]

        seen = await api.get(f"/v1/projects/{project_id}", headers=auth(stranger))
        assert seen.status_code == 404
        assert seen.headers["content-type"].startswith("application/problem+json")
        listed = await api.get("/v1/projects", headers=auth(stranger))
        assert project_id not in [item["project_id"] for item in listed.json()["items"]]
        assert (await api.get(f"/v1/projects/{project_id}", headers=auth(owner))).status_code == 200

    url = f"{shared_stack.ws_url}/v1/ws/projects/{project_id}?token={stranger}"
    with pytest.raises(
        (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed)
    ):
        async with websockets.connect(url) as ws:
            await ws.recv()


async def test_bad_input_is_a_problem_that_names_the_field(shared_stack: Stack) -> None:
    key = await shared_stack.issue_key("tenant-bad-input")
    async with httpx.AsyncClient(base_url=shared_stack.api_url, headers=auth(key)) as api:
        answer = await api.post("/v1/projects", json={"scenes": [{"prompt": ""}]})
        unauthenticated = await api.get("/v1/projects", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["errors"][0]["loc"] == ["body", "scenes", 0, "prompt"]
    assert "scenes.0.prompt" in problem["detail"]
    assert unauthenticated.status_code == 401


async def test_crashed_services_lose_no_clip_and_bill_none_twice(own_stack: Stack) -> None:
    key = await own_stack.issue_key("tenant-crash")
    async with httpx.AsyncClient(base_url=own_stack.api_url, headers=auth(key)) as api:
        created = await api.post(
            "/v1/projects", json={"scenes": scenes(*([SLOW] * 3 + ["[sim:latency=40]"] * 3))}
        )
        project_id = created.json()["project_id"]

        async def some_processing() -> bool | None:
            body = (await api.get(f"/v1/projects/{project_id}")).json()
            return True if any(r["status"] == "processing" for r in body["results"]) else None

        await eventually_returns(
            some_processing, "a clip processing", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
        own_stack.kill_hard("poller")
        own_stack.start_service("poller")

        second = await api.post("/v1/projects", json={"scenes": scenes(*([FAST] * 4))})
        own_stack.kill_hard("submitter")
        own_stack.start_service("submitter")

        async def finished(pid: str) -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get(f"/v1/projects/{pid}")).json()
            return body if body["all_complete"] else None

        clip_uuids: set[str] = set()
        for pid in (project_id, second.json()["project_id"]):
            body = await eventually_returns(
                functools.partial(finished, pid),
                f"{pid} done",
                PROCESS_DEADLINE_S,
                pause_s=PROCESS_PAUSE_S,
            )
            assert body["status"] == "completed", body
            clip_uuids |= set(body["clips"])

    # Runware holds exactly one billed task per clip: a resubmit after a crash met
    # conflictTaskUUID instead of creating a second task.
    billed = [task for task in await own_stack.sim_tasks() if task["billed"]]
    assert sorted(task["task_uuid"] for task in billed) == sorted(clip_uuids)
