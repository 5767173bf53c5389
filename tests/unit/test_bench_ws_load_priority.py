"""A WebSocket load process runs behind the stack: it does not take the core from the notifier."""

from __future__ import annotations

import os

from reelflow_devtools.bench.notifier import LoadProcess
from reelflow_devtools.bench.ws_load import LOAD_NICE


async def test_a_load_process_runs_niced_and_as_a_batch_process_and_says_so() -> None:
    load = await LoadProcess.start()
    try:
        said = await load.ask({"op": "priority"})
        pid = load.process.pid
        # What the scheduler holds for the child, not only what it said.
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        policy = os.sched_getscheduler(pid)
    finally:
        await load.stop()
    assert nice == os.getpriority(os.PRIO_PROCESS, 0) + LOAD_NICE
    assert policy == os.SCHED_BATCH
    assert said == {"nice": nice, "policy": "SCHED_BATCH"}
    assert load.process.returncode == 0
