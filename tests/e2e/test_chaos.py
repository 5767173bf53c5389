"""``make chaos --quick``: the harness kills every process once, injects every fault, and judges.

The full run (1000+ clips, ``make chaos``) is not part of the test suite; this
one runs the same code on a few dozen clips, as a process, as ``make chaos`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reelflow_devtools.chaos.plan import QUICK, TARGETS

pytestmark = pytest.mark.e2e


def test_a_quick_chaos_run_kills_everything_once_and_finds_nothing_lost(tmp_path: Path) -> None:
    run_dir = tmp_path / "chaos"
    done = subprocess.run(
        [sys.executable, "-m", "reelflow_devtools.chaos", "--quick", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    results = json.loads((run_dir / "results.json").read_text())
    clips, watchers = results["clips"], results["watchers"]

    assert results["passed"] is True, report
    assert all(results["injected"]["kills"][target] >= 1 for target in TARGETS), report
    assert clips["attempted"] == QUICK.clips == clips["created"], report
    assert clips["succeeded"] + clips["failed_as_injected"] == QUICK.clips, report
    assert results["dead_letters"]["poison_published"] == QUICK.poison_messages, report
    assert results["dead_letters"]["exactly_the_poison"] is True, report
    assert results["injected"]["forged_webhooks"] > 0, report
    assert watchers["finished"] == watchers["projects"] == QUICK.watchers, report
    assert watchers["connections"] > watchers["projects"], report  # they hung up, came back
    assert results["time_to_converge_s"] is not None, report
