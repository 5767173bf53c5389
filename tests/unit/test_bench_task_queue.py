"""The task-queue baseline's schedule, and reelflow's throughput compared with it in one run."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from reelflow_common.polling.reference import sdk_schedule
from reelflow_devtools.bench.ground_truth import check_stored_projects
from reelflow_devtools.bench.main import chosen_scenarios
from reelflow_devtools.bench.report import Targets, checks, markdown, task_queue_multiples
from reelflow_devtools.bench.task_queue.topology import poll_delays_ms
from reelflow_devtools.bench.task_queue_run import WORKERS, prefetches
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.responses import video_url
from reelflow_submitter.settings import Settings as SubmitterSettings


def test_the_baseline_polls_on_the_runware_sdks_schedule() -> None:
    delays_s = [ms / 1000 for ms in poll_delays_ms(1)]
    plan = sdk_schedule()

    assert list(itertools.accumulate(delays_s[:-1])) == pytest.approx(list(plan.checks), abs=1e-3)
    assert delays_s[-1] == plan.tail_interval_s
    assert poll_delays_ms(100)[:3] == [10, 5, 8]  # divided by the simulator's speedup


def _run(size: int, clips_per_s: float) -> dict[str, Any]:
    return {
        "scenes_per_project": size,
        "projects": 500 // size,
        "clips": 500,
        "clips_succeeded": 500,
        "wall_s": 500 / clips_per_s,
        "clips_per_s": clips_per_s,
        "db_ops_per_clip": 2.2,
        "db_ops_by_kind": {"insert": 500 // size},
        "publishes_per_clip": 5.1,
        "cpu_s_per_clip": {"api": 0.002, "mongo": 0.004},
        "broker_cpu_s_per_clip": 0.004,
    }


def _baseline(size: int, clips_per_s: float) -> dict[str, Any]:
    return _run(size, clips_per_s) | {"provider_requests_per_clip": 2.0, "provider_tasks": 500}


def _results(*, with_baseline: bool) -> dict[str, Any]:
    config = {"cpus": 2, "load_before": [0.0], "mongo": "-", "command": "bench"}
    results: dict[str, Any] = {"config": config, "throughput": [_run(10, 90.0), _run(50, 30.0)]}
    if with_baseline:
        results["task_queue"] = [_baseline(10, 40.0), _baseline(50, 20.0)]
        for run in results["throughput"]:
            run |= task_queue_multiples(run, results["task_queue"])
    return results


def test_reelflow_is_compared_with_the_baseline_measured_in_the_same_run() -> None:
    results = _results(with_baseline=True)
    found = {check.name: check for check in checks(results, Targets())}

    ten, fifty = results["throughput"]
    assert (ten["task_queue_multiple"], fifty["task_queue_multiple"]) == (2.25, 1.5)
    assert found["10-scene projects: x task queue"].passed
    assert not found["50-scene projects: x task queue"].passed
    # the name stays the same run after run; the baseline's figure is beside the target
    assert found["50-scene projects: x task queue"].target == ">= 2 x (task queue 20.0 clips/s)"
    assert found["task-queue baseline, 50-scene projects: clips not succeeded"].passed
    report = markdown(results, list(found.values()))
    assert "| 2.25 |" in report
    assert "| 50 | 10 | 500 | 25.0 | **20.0** |" in report  # the baseline's own table


def test_without_the_baseline_there_is_no_multiple_and_no_check() -> None:
    results = _results(with_baseline=False)
    found = checks(results, Targets())

    assert not any("task queue" in check.name for check in found)
    assert all("task_queue_multiple" not in run for run in results["throughput"])
    assert markdown(results, found).splitlines()[4].endswith("| - | - | - | - |")


def test_the_taskqueue_scenario_is_in_the_default_set_and_selectable() -> None:
    assert "taskqueue" in chosen_scenarios("all")
    assert chosen_scenarios("taskqueue") == ["taskqueue"]


def test_the_baselines_workers_have_as_many_submits_and_polls_in_flight_as_reelflow() -> None:
    submits, polls = prefetches()

    # one tenant per size: reelflow's submitter takes that many of its clips at once
    assert submits * WORKERS == SubmitterSettings().tenant_submit_concurrency
    assert polls * WORKERS == PollerSettings().poll_concurrency


SIM = "http://sim"


def _task(task_uuid: str, *, submissions: int = 1, state: str = "success") -> dict[str, Any]:
    return {
        "task_uuid": task_uuid,
        "submissions": submissions,
        "state": state,
        "billed": True,
        "cost": 0.4,
        "video_uuids": [f"v-{task_uuid}"],
        "polls": 1,
    }


def _clip(task_uuid: str, **fields: Any) -> dict[str, Any]:
    clip = {
        "task_uuid": task_uuid,
        "status": "success",
        "video_url": video_url(SIM, f"v-{task_uuid}"),
        "cost": 0.4,
    }
    return clip | fields


def test_the_baselines_ground_truth_checks_each_clips_result_against_the_simulator() -> None:
    clips = [
        _clip("a"),
        _clip("b", video_url=video_url(SIM, "v-other")),
        _clip("c", cost=0.5),
        _clip("d"),
        _clip("e", status="failed", video_url=None, cost=None),
    ]
    tasks = {task["task_uuid"]: task for task in map(_task, "abce")}
    tasks["d"] = _task("d", submissions=2)
    tasks["x"] = _task("x")  # paid for, no clip
    projects: list[dict[str, Any]] = [
        {"status": "partial", "clips": clips},
        {"status": "generating", "clips": []},
    ]

    truth = check_stored_projects(projects, tasks, {"requests": 9}, sim_url=SIM)

    assert truth["wrong_result"] == 2  # b's URL, c's cost
    assert truth["examples"]["wrong_result"] == ["b", "c"]
    assert truth["submitted_more_than_once"] == 1
    assert (truth["lost"], truth["extra_tasks"], truth["projects_not_terminal"]) == (1, 1, 1)
    assert truth["dead_letters"] is None
    found = {check.name: check for check in checks({"ground_truth": {"tq": truth}}, Targets())}
    assert not found["tq stack: clips whose video URL or cost is not the simulator's"].passed
    assert not found["tq stack: tasks submitted more than once"].passed
    assert "tq stack: dead-lettered messages" not in found
