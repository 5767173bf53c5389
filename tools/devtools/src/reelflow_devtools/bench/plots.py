"""The benchmark's plots, as PNG files next to ``results.json``. No network I/O.

- ``polling.png``: p95 (and p50) detection delay against getResponse calls per clip,
  one point per schedule, the live run among them;
- ``throughput.png``: clips per second against project size, reelflow beside the
  raw ceiling and the task-queue figures of issue 8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in a test

import matplotlib.pyplot as plt

#: issue 8's task-queue implementation on this machine, clips/s by scenes per project
TASK_QUEUE_CLIPS_PER_S = {10: 44.1, 50: 22.2}


def plot_polling(polling: dict[str, Any], path: Path) -> Path:
    """Detection delay against calls per clip, one marker per schedule."""
    figure, axes = plt.subplots(figsize=(9, 6))
    points = [
        (
            row["schedule"]
            + ("" if row["progress"] in ("-", "ignored") else f" ({row['progress']})"),
            row["calls_per_clip"],
            row["p50_delay_s"],
            row["p95_delay_s"],
        )
        for row in polling["exact"]["rows"]
        if row["group"] == "polling" or "lost" not in row["schedule"]
    ]
    live = polling.get("live")
    if live:
        points.append(
            (
                "reelflow live (the poller as it runs)",
                live["calls_per_clip"],
                live["p50_delay_s"],
                live["p95_delay_s"],
            )
        )
    for index, (label, calls, p50, p95) in enumerate(points):
        colour = f"C{index % 10}"
        axes.scatter([calls], [p95], color=colour, marker="o", label=label)
        axes.scatter([calls], [p50], color=colour, marker="x")
        axes.plot([calls, calls], [p50, p95], color=colour, linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("symlog", linthresh=1.0)
    axes.set_xlabel("getResponse calls per clip (log)")
    axes.set_ylabel("detection delay, simulated s: o p95, x p50")
    axes.set_title(f"Polling schedules on the same completion times ({polling['model']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_throughput(throughput: list[dict[str, Any]], path: Path) -> Path:
    """Clips per second against scenes per project."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    sizes = [run["scenes_per_project"] for run in throughput]
    axes.plot(sizes, [run["clips_per_s"] or 0 for run in throughput], "o-", label="reelflow")
    ceilings = [
        (run["scenes_per_project"], run["ceiling"]["clips_per_s"])
        for run in throughput
        if run.get("ceiling")
    ]
    if ceilings:
        axes.plot(*zip(*ceilings, strict=True), "s--", label="raw ceiling (same DB and broker)")
    axes.plot(
        list(TASK_QUEUE_CLIPS_PER_S),
        list(TASK_QUEUE_CLIPS_PER_S.values()),
        "^:",
        label="task-queue implementation (issue 8)",
    )
    axes.set_xscale("log")
    axes.set_xticks(sizes, [str(size) for size in sizes])
    axes.set_xlabel("scenes per project")
    axes.set_ylabel("clips per second (zero-latency provider)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """Every plot the results have data for; the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if results.get("polling"):
        written.append(plot_polling(results["polling"], folder / "polling.png"))
    if results.get("throughput"):
        written.append(plot_throughput(results["throughput"], folder / "throughput.png"))
    return written
