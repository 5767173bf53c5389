"""The fair-share benchmark, small: it runs as a process and returns every figure.

Its timing (the small tenant's delay with and without fair share) is reported by
the full run in docs/BENCHMARKS.md, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

FLOOD, SMALL, ROUNDS = 100, 3, 2


def test_a_small_fairness_run_measures_both_tenants_in_both_modes(tmp_path: Path) -> None:
    out = tmp_path / "fairness.json"
    command = [sys.executable, "-m", "reelflow_devtools.bench.fairness"]
    command += ["--flood", str(FLOOD), "--small", str(SMALL), "--rounds", str(ROUNDS)]
    command += ["--pause", "0", "--run-dir", str(tmp_path / "run"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "| fair_share" in done.stdout, report
    assert "| no_fair_share" in done.stdout, report
    results = json.loads(out.read_text())

    assert results["no_fair_share"]["tenant_submit_concurrency"] == FLOOD + SMALL * ROUNDS
    for mode in ("fair_share", "no_fair_share"):
        small, flood = results[mode]["small"], results[mode]["flood"]
        assert small["rounds"] == ROUNDS == len(small["per_round"]), report
        for one in small["per_round"]:
            assert len(one["clip_delays_ms"]) == SMALL, report
            assert one["delay_ms"] == max(one["clip_delays_ms"]) > 0, report
        # The first round starts before the simulator has seen the whole flood.
        assert small["per_round"][0]["flood_backlog"] > 0, report
        assert small["delay_under_flood"]["count"] == small["rounds_under_flood"] >= 1, report
        assert flood["clips_completed"] == FLOOD == flood["submit_delay"]["count"], report
        assert flood["submits_per_s"] > 0, report
