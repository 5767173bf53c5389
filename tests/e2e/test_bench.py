"""``make bench --quick`` runs every scenario end to end and writes its results and plots.

Figures are not judged here (timing targets belong to ``make bench`` itself); what
is checked is that each scenario ran, measured something, and that the run's
correctness checks passed (its exit status).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n"


# About 125 s on an idle 2-core machine; the suite's 300 s cut it short once, at a load
# average of 10. The subprocess's own deadline (600 s) comes before this one.
@pytest.mark.timeout(660)
def test_the_quick_bench_runs_every_scenario_and_writes_results_and_plots(
    amqp_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "reelflow_devtools.bench", "--quick"]
    done = subprocess.run(
        [*command, "--amqp-url", amqp_url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["config"]["scenarios"] == [
        "throughput",
        "ceiling",
        "taskqueue",
        "polling",
        "notifier",
        "api",
        "overload",
        "fairness",
    ]
    sizes = {run["scenes_per_project"]: run for run in results["throughput"]}
    assert sorted(sizes) == [1, 10, 50]
    for run in sizes.values():
        assert run["clips_succeeded"] == run["clips"]
        assert run["db_ops_per_clip"] > 0
        assert run["confirmed_publishes"] >= run["clips"]  # at least each clip's SubmitClip
        by_service = run["publishes_per_clip_by_service"]
        assert sum(by_service.values()) == pytest.approx(run["publishes_per_clip"], abs=0.05)
        assert run["ceiling"]["clips_per_s"] > 0
        # every clip's check asks Runware at least once; submits share requests
        assert 1 <= run["provider_requests_per_clip"] < 2
    baseline = {run["scenes_per_project"]: run for run in results["task_queue"]}
    assert sorted(baseline) == [1, 10, 50]
    for size, run in baseline.items():
        assert run["clips"] == sizes[size]["clips"]  # the same clips as reelflow's run
        assert run["clips_succeeded"] == run["clips"]
        assert run["db_ops_per_clip"] > 0
        # two rounds (quick), one of each order, each with the baseline's run and
        # reelflow's back to back: reelflow's clips/s over the baseline's within each
        # round, the pair's the geometric mean of the two
        rounds = sizes[size]["rounds"]
        assert [line["round"] for line in rounds] == [1, 2]
        assert [line["first"] for line in rounds] == ["baseline", "reelflow"]
        for line in rounds:
            multiple = line["clips_per_s"] / line["task_queue_clips_per_s"]
            assert line["task_queue_multiple"] == pytest.approx(multiple, abs=1e-3)
            share = line["clips_per_s"] / line["ceiling_clips_per_s"]
            assert line["ceiling_fraction"] == pytest.approx(share, abs=1e-3)
            # the baseline against the ceiling of its own work, in the same round
            share = line["task_queue_clips_per_s"] / line["task_queue_ceiling_clips_per_s"]
            assert line["task_queue_ceiling_fraction"] == pytest.approx(share, abs=1e-3)
        assert run["ceiling_rounds"] == [1, 2]
        pair = math.prod(line["task_queue_ceiling_fraction"] for line in rounds) ** 0.5
        assert run["ceiling_fraction"] == pytest.approx(pair, abs=2e-3)
        pair = math.prod(line["task_queue_multiple"] for line in rounds) ** 0.5
        assert sizes[size]["task_queue_multiple"] == pytest.approx(pair, abs=2e-3)
        assert sizes[size]["task_queue_rounds"] == [1, 2]
    report = (tmp_path / "results.md").read_text()
    assert "| 10 | 2 | reelflow |" in report  # every round listed
    assert "(r1+r2) |" in report  # the pair a multiple is from

    polling = results["polling"]
    assert polling["live"]["clips"] == 20
    assert polling["live"]["calls_per_clip"] >= 1
    schedules = [row["schedule"] for row in polling["exact"]["rows"]]
    assert schedules[0].startswith("Runware SDK")
    assert {row["group"] for row in polling["exact"]["rows"]} == {"polling", "batching", "webhooks"}

    notifier = results["notifier"]
    connected = notifier["idle_connected"]["ok"] + notifier["hot_connected"]["ok"]
    assert connected == notifier["connections"]
    assert notifier["changes_measured"] > 0
    assert notifier["notifier_peak_rss_mib"] > 0
    # the load processes' own collector passes while the changes flowed are recorded
    assert set(notifier["load_gc_passes"]) == {"passes", "longest_ms", "longest_cpu_ms"}
    # the notifier closed every socket and was idle again before its stack stopped
    assert notifier["notifier_quiet_after_s"] is not None
    # on a stack of its own, whose settings follow its speedup (100 in the quick plan)
    notifier_stack = results["config"]["settings_notifier_stack"]
    assert results["config"]["notifier_speedup"] == 100
    assert notifier_stack["poll_max_interval_s"] == pytest.approx(0.6)

    assert results["api"]["get_project"]["count"] > 0
    for phase in ("get_project", "create_project"):
        assert set(results["api"][phase]["cpu_ms_per_request"]) >= {"api", "mongo", "bench"}
    assert results["overload"]["unexpected"] == 0
    assert set(results["ground_truth"]) == {"fast", "notifier", "polling", "taskqueue"}
    assert {check["name"] for check in results["checks"]} >= {
        "1-scene projects: DB operations per clip",
        "50-scene projects: share of the raw ceiling",
    }
    assert_fairness_measured(results["fairness"])
    for plot in ("polling.png", "throughput.png"):
        assert (tmp_path / plot).read_bytes().startswith(PNG), plot


#: how far apart two services' readings of the database clock may be (``DbClock``)
CLOCK_SKEW_MS = 50


def assert_fairness_measured(fairness: dict[str, Any]) -> None:
    """Both modes ran with the quick plan and every figure is there (timings not asserted)."""
    plan = fairness["plan"]
    flood, small_clips, rounds = plan["flood"], plan["small"], plan["rounds"]
    assert fairness["no_fair_share"]["tenant_submit_concurrency"] == flood + small_clips * rounds
    for mode in ("fair_share", "no_fair_share"):
        small, flooded = fairness[mode]["small"], fairness[mode]["flood"]
        assert small["rounds"] == rounds == len(small["per_round"]), mode
        for one in small["per_round"]:
            assert len(one["clip_delays_ms"]) == small_clips, mode
            assert one["delay_ms"] == max(one["clip_delays_ms"]), mode
            # created_at (the API) and submitted_at (the submitter) are two processes'
            # readings of the database's clock, each off by up to a round trip: a submit
            # a few ms after the POST can come out a few ms "before" it.
            assert one["delay_ms"] > -CLOCK_SKEW_MS, mode
        # The first round starts before the simulator has seen the whole flood.
        assert small["per_round"][0]["flood_backlog"] > 0, mode
        assert small["delay_under_flood"]["count"] == small["rounds_under_flood"] >= 1, mode
        assert flooded["clips_completed"] == flood == flooded["submit_delay"]["count"], mode
        assert flooded["submits_per_s"] > 0, mode
