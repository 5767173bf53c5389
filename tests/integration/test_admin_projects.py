"""``reelflow-admin project show`` and ``reconcile`` on a real RabbitMQ, MongoDB and the simulator.

The command runs in a thread of this process (it runs its own event loop), on
the test's queue prefix and database; leases last ten minutes, so nothing here
is due for the poller's reconciler: whatever moves, the command moved.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import structlog

from reelflow_common.admin.cli import AdminSettings, main
from reelflow_common.domain import ClipStatus, ProjectStatus
from reelflow_common.messages import CheckClip, ClipUpdated, ProjectFinished, SubmitClip
from reelflow_common.store import TaskFailed, TaskSucceeded
from reelflow_common.store.timefmt import rfc3339, utcnow
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_runware_sim.testing import RunningSimulator
from reelflow_submitter.service import video_request
from tests.integration.worker_helpers import FAST_LADDERS, World, runware_settings

pytestmark = pytest.mark.integration

LEASE_S = 600.0

Run = Callable[..., Any]


@pytest.fixture
def settings(settings_for: Callable[..., Any], runware_sim: RunningSimulator) -> AdminSettings:
    built: AdminSettings = settings_for(
        AdminSettings,
        lease_s=LEASE_S,
        not_found_grace_s=0,
        **FAST_LADDERS,
        **runware_settings(runware_sim),
    )
    return built


@pytest.fixture
def admin(settings: AdminSettings, capsys: pytest.CaptureFixture[str]) -> Run:
    """``reelflow-admin ARGS``, awaited: (exit code, stdout, stderr)."""

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with structlog.testing.capture_logs():  # log lines stay out of stdout and stderr
            code = await asyncio.to_thread(main, argv, settings=settings)
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def retried_and_half_done(world: World) -> tuple[str, str, str]:
    """Scene 0 done ($0.40); scene 1 failed at Runware and retried: (project, old, new task)."""
    project = await world.processing(await world.new_project("a fox", "a cat [sim:hang]"))
    fox, cat = project.clips
    await world.projects.record(
        project.id, 0, fox.task_uuid, TaskSucceeded(video_url="https://v/fox.mp4", cost=0.4)
    )
    failed = TaskFailed(code="timeoutProvider", message="the provider gave up")
    await world.projects.record(project.id, 1, cat.task_uuid, failed)
    outcome = await world.projects.retry(project.id, tenant_id=world.tenant_id)
    assert outcome is not None
    assert outcome.resubmit == [1]
    return project.id, cat.task_uuid, outcome.project.clips[1].task_uuid


def about(event: dict[str, Any]) -> str:
    if event["type"] == "project.finished":
        return f"project.finished {event['status']}"
    return f"{event['type']} {event['clip']['scene_index']} {event['clip']['status']}"


# --- project show --------------------------------------------------------------------------


async def test_project_show_json_has_clips_attempts_leases_counts_cost_and_the_event_log(
    world: World, admin: Run
) -> None:
    project_id, old_task, new_task = await retried_and_half_done(world)
    stored = await world.project(project_id)

    code, out, err = await admin("project", "show", project_id, "--json")

    assert code == 0, err
    state = json.loads(out)
    assert (state["project_id"], state["status"], state["seq"]) == (project_id, "generating", 6)
    assert state["counts"] == {
        "total_clips": 2,
        "completed": 1,
        "pending": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert state["cost"] == {"usd": 0.4, "known": 1, "unknown": 0}
    fox, cat = state["clips"]
    assert (fox["status"], fox["video_url"], fox["lease"]) == ("success", "https://v/fox.mp4", None)
    assert fox["request"]["prompt"] == "a fox"
    assert (cat["status"], cat["task_uuid"]) == ("queued", new_task)
    lease = stored.clips[1].lease
    assert lease is not None
    assert cat["lease"]["token"] == lease.token
    [attempt] = cat["attempts"]
    assert (attempt["task_uuid"], attempt["status"]) == (old_task, "failed")
    assert attempt["error"]["code"] == "timeoutProvider"
    # Every change is in the log, numbered up to the document's seq; the failure finished
    # the project (partial) until the retry made it generating again.
    assert [event["seq"] for event in state["events"]] == [1, 2, 3, 4, 5, 6]
    assert [about(event) for event in state["events"]] == [
        "clip.updated 0 processing",
        "clip.updated 1 processing",
        "clip.updated 0 success",
        "clip.updated 1 failed",
        "project.finished partial",
        "clip.updated 1 queued",
    ]
    assert state["events"][-1]["replaces_task_uuid"] == old_task
    assert state["events"][-1]["counts"] == state["counts"]


async def test_project_show_reads_as_lines_and_an_unknown_project_is_an_error(
    world: World, admin: Run
) -> None:
    project_id, old_task, new_task = await retried_and_half_done(world)

    code, out, err = await admin("project", "show", project_id)

    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert f"Project {project_id}  'Trip to Lisbon'" in lines
    assert "clips        1 completed / 1 pending / 0 failed / 0 cancelled of 2" in lines
    assert "cost         $0.40 (1 priced, 0 unpriced)" in lines
    assert f"#1   queued      task {new_task}" in lines
    assert f"earlier task {old_task}: failed (timeoutProvider: the provider gave up)" in lines
    assert any(line.startswith("lease ") and "(in " in line for line in lines)
    assert "Event log (seq 1-6; 6 of 6 changes kept)" in lines

    assert await admin("project", "show", "no-such-project") == (
        1,
        "",
        "reelflow-admin: no project 'no-such-project'\n",
    )


async def test_project_show_tells_a_stored_copy_and_logs_its_event(
    world: World, admin: Run
) -> None:
    project_id, _old, _new = await retried_and_half_done(world)
    fox = (await world.project(project_id)).clips[0]
    key = f"videos/{project_id}/0/{fox.task_uuid}.mp4"
    stored = await world.projects.record_stored(
        project_id,
        0,
        fox.task_uuid,
        key=key,
        size_bytes=5893,
        sha256=None,
        content_type="video/mp4",
        stored_url=f"/v1/videos/{key}?expires=1&signature=s",
    )
    assert stored.applied

    code, out, err = await admin("project", "show", project_id)

    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert f"stored {key} (5893 bytes)" in lines
    logged = f"#0 stored  task {fox.task_uuid}"
    assert any("clip.stored" in line and line.endswith(logged) for line in lines)
    code, out, err = await admin("project", "show", project_id, "--json")
    assert json.loads(out)["events"][-1]["type"] == "clip.stored"


# --- project list --------------------------------------------------------------------------


def listed(out: str) -> tuple[list[str], list[list[str]]]:
    """``project list``'s header and rows, as cells (the title, quoted, is one word here)."""
    header, *rows = out.splitlines()
    return header.split(), [row.split() for row in rows]


async def test_project_list_finds_a_tenants_projects_and_the_ones_past_their_lease(
    world: World, admin: Run, mongo_db: Any
) -> None:
    for tenant_id in ("tenant-1", "tenant-2"):
        await mongo_db["tenants"].insert_one(
            {"_id": tenant_id, "name": tenant_id, "created_at": utcnow()}
        )
    stuck = await world.new_project("a fox")
    world.tenant_id = "tenant-2"
    other = await world.new_project("a cat")
    world.tenant_id = "tenant-1"
    failed = await world.processing(await world.new_project("an owl"))
    await world.projects.record(
        failed.id, 0, failed.clips[0].task_uuid, TaskFailed(code="x", message="no")
    )
    # A title that would clear the terminal, printed as it is stored, escaped.
    await mongo_db["projects"].update_one({"_id": failed.id}, {"$set": {"title": "\x1b[2Jowl"}})
    # The first clip's chain stopped: its lease ran out a minute ago (the reconciler's due_at).
    lease_ended = utcnow() - timedelta(seconds=60)
    lease_ended = lease_ended.replace(microsecond=lease_ended.microsecond // 1000 * 1000)
    await mongo_db["projects"].update_one({"_id": stuck.id}, {"$set": {"due_at": lease_ended}})

    code, out, err = await admin("project", "list", "--tenant", "tenant-1")

    assert code == 0, err
    header, rows = listed(out)
    assert header == [
        "PROJECT", "CREATED", "STATUS", "CLIPS", "COMPLETED", "PENDING", "FAILED", "CANCELLED",
        "TITLE",
    ]  # fmt: skip
    assert [row[0] for row in rows] == [failed.id, stuck.id]  # newest first
    assert rows[0][2:] == ["failed", "1", "0", "0", "1", "0", "'\\x1b[2Jowl'"]
    assert rows[1][2:8] == ["generating", "1", "0", "1", "0", "0"]
    assert "\x1b" not in out
    code, out, err = await admin("project", "list", "--tenant", "tenant-1", "--status", "failed")
    assert (code, [row[0] for row in listed(out)[1]]) == (0, [failed.id])

    code, out, err = await admin("project", "list", "--past-lease")

    assert code == 0, err
    header, rows = listed(out)
    assert header[:2] == ["PROJECT", "TENANT"]
    assert header[-2:] == ["LEASE_ENDED", "TITLE"]
    assert [row[:4] for row in rows] == [
        [stuck.id, "tenant-1", rfc3339(stuck.created_at), "generating"]
    ]
    assert rows[0][header.index("LEASE_ENDED")] == rfc3339(lease_ended)
    assert "reelflow-admin project show PROJECT_ID" in err
    code, out, err = await admin("project", "list", "--past-lease", "--tenant", "tenant-2")
    assert (code, listed(out)[1], err) == (0, [], "no project past its lease\n")
    code, out, err = await admin("project", "list", "--tenant", "tenant-2", "--json")
    assert code == 0, err
    [line] = out.splitlines()
    assert json.loads(line) | {"created_at": None, "updated_at": None, "due_at": None} == {
        "project_id": other.id,
        "tenant_id": "tenant-2",
        "title": "Trip to Lisbon",
        "status": "generating",
        "counts": {"total_clips": 1, "completed": 0, "pending": 1, "failed": 0, "cancelled": 0},
        "cost": {"usd": 0.0, "known": 0, "unknown": 0},
        "created_at": None,
        "updated_at": None,
        "due_at": None,
    }
    code, out, err = await admin("project", "list", "--tenant", "tenant-1", "--limit", "1")
    assert (code, len(listed(out)[1])) == (0, 1)
    assert "more than 1 project(s)" in err
    assert (await admin("project", "list"))[0] == 1
    assert await admin("project", "list", "--tenant", "nobody") == (
        1,
        "",
        "reelflow-admin: no tenant 'nobody'; reelflow-admin tenant list shows the tenants\n",
    )
    code, _, err = await admin("project", "list", "--past-lease", "--status", "failed")
    assert (code, "--past-lease lists generating projects" in err) == (1, True)


# --- reconcile -----------------------------------------------------------------------------


async def test_reconcile_records_what_runware_says_without_waiting_for_the_lease(
    world: World, admin: Run
) -> None:
    # Its chain was lost: Runware finished the task, nobody asked. The lease runs 10 minutes.
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.until_finished_at_runware(task_uuid)
    events = await world.events()

    code, out, err = await admin("reconcile", project.id)

    assert code == 0, err
    assert out.splitlines() == [
        f"#0   processing -> success  task {task_uuid}  Runware: success  recorded",
        f"project {project.id}: completed, 1 completed / 0 pending / 0 failed / 0 cancelled of 1",
    ]
    after = await world.project(project.id)
    assert (after.status, after.clips[0].status) == (ProjectStatus.COMPLETED, ClipStatus.SUCCESS)
    published = await world.settle_events(events)
    assert [type(event) for event in published] == [ClipUpdated, ProjectFinished]
    assert [event.seq for event in published] == [2, 3]


async def test_reconcile_rearms_each_open_clip_under_a_fresh_token(
    world: World, admin: Run
) -> None:
    # Scene 0 runs at Runware (its checks were lost); scene 1's SubmitClip never arrived.
    project = await world.new_project("a fox [sim:hang]", "a cat")
    message = world.submit_of(project, 0)
    await world.runware.submit_video(video_request(message, webhook_url=None))
    await world.projects.mark_processing(
        project.id, 0, project.clips[0].task_uuid, token=message.token
    )
    before = await world.project(project.id)
    checks, submits = await world.inbox(CHECK_CLIP), await world.inbox(SUBMIT_CLIP)

    code, out, err = await admin("reconcile", project.id)

    assert code == 0, err
    after = await world.project(project.id)
    fox_lease, cat_lease = (clip.lease for clip in after.clips)
    assert fox_lease is not None
    assert cat_lease is not None
    old_tokens = {clip.lease.token for clip in before.clips if clip.lease is not None}
    assert {fox_lease.token, cat_lease.token}.isdisjoint(old_tokens)
    check, _ = await checks.next_of(CheckClip)
    submit, _ = await submits.next_of(SubmitClip)
    assert (check.scene_index, check.token) == (0, fox_lease.token)
    assert (submit.scene_index, submit.token, submit.request.prompt) == (
        1,
        cat_lease.token,
        "a cat",
    )
    assert submit.task_uuid == before.clips[1].task_uuid  # the same task: never a second one
    fox_line, cat_line, _project = out.splitlines()
    assert fox_line.startswith(f"#0   processing -> processing  task {check.task_uuid}")
    assert "Runware: processing  check re-armed (lease until " in fox_line
    assert cat_line.startswith(f"#1   queued -> queued  task {submit.task_uuid}")
    assert "submit re-armed (lease until " in cat_line
    assert after.status is ProjectStatus.GENERATING
    assert after.due_at == min(fox_lease.until, cat_lease.until)


async def test_reconcile_whose_new_chain_cannot_start_says_why_and_fails(
    world: World, settings: AdminSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command runs with other delays than the services (the defaults, as it did under
    # make run): the wait queue its first check goes to is not one the services declared.
    project = await world.new_project("a fox [sim:hang]")
    message = world.submit_of(project, 0)
    await world.runware.submit_video(video_request(message, webhook_url=None))
    await world.projects.mark_processing(
        project.id, 0, project.clips[0].task_uuid, token=message.token
    )
    elsewhere = settings.model_copy(
        update={"poll_initial_delay_s": 1.0, "poll_backoff": 1.35, "poll_max_delay_s": 300.0}
    )

    capsys.readouterr()
    with structlog.testing.capture_logs() as logs:
        code = await asyncio.to_thread(main, ["reconcile", project.id], settings=elsewhere)
    out, err = capsys.readouterr()

    assert code == 1, out
    fox_line, _project = out.splitlines()
    assert fox_line.endswith(
        "Runware: processing  not started (its first command was not published: due again now)"
    )
    assert "did not start: its first command could not be published" in err
    assert "--env-file .run/env" in err
    [why] = [line for line in logs if line["event"] == "chain_not_started"]
    assert "no queue for routing key" in why["error"]
    lease = (await world.project(project.id)).clips[0].lease
    assert lease is not None
    assert lease.until <= utcnow()  # due again: the pollers' reconciler re-arms it


async def test_reconcile_leaves_a_finished_project_alone_and_names_an_unknown_one(
    world: World, admin: Run
) -> None:
    project = await world.processing(await world.new_project("a fox"))
    task_uuid = project.clips[0].task_uuid
    await world.projects.record(project.id, 0, task_uuid, TaskSucceeded(video_url="https://v"))
    seq = (await world.project(project.id)).seq

    assert await admin("reconcile", project.id) == (
        0,
        f"project {project.id} is completed: no clip is open\n",
        "",
    )
    assert (await world.project(project.id)).seq == seq
    code, _, err = await admin("reconcile", "no-such-project")
    assert (code, err) == (1, "reelflow-admin: no project 'no-such-project'\n")


async def test_reconcile_finishes_a_project_a_crash_left_unfinished(
    world: World, admin: Run, mongo_db: Any
) -> None:
    project = await world.new_project("a fox")
    # The last clip ended, then the writer died before its finisher ran.
    await mongo_db["projects"].update_one(
        {"_id": project.id},
        {
            "$set": {"clips.0.status": "success", "clips.0.video_url": "https://v/0.mp4"},
            "$unset": {"clips.0.lease": ""},
            "$inc": {"counts.pending": -1, "counts.completed": 1},
        },
    )
    events = await world.events()

    code, out, err = await admin("reconcile", project.id)

    assert code == 0, err
    assert out.splitlines() == [
        "no clip was open",
        "the project was finished (no clip was pending)",
        f"project {project.id}: completed, 1 completed / 0 pending / 0 failed / 0 cancelled of 1",
    ]
    assert (await world.project(project.id)).status is ProjectStatus.COMPLETED
    (finished,) = await world.settle_events(events)
    assert isinstance(finished, ProjectFinished)
