"""A WebSocket load process runs behind the stack: niced, and as a batch process."""

from __future__ import annotations

import asyncio
import os

import pytest

from reelflow_devtools.bench.notifier import LoadProcess
from reelflow_devtools.bench.ws_load import LOAD_NICE
from tests.waiting import DEADLINE_S

#: the highest niceness Linux allows
NICEST = 19


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
async def test_a_load_process_runs_niced_and_as_a_batch_process_and_says_so() -> None:
    load = await LoadProcess.start()
    try:
        said = await asyncio.wait_for(load.ask({"op": "priority"}), DEADLINE_S)
        pid = load.process.pid
        # What the scheduler holds for the child, not only what it said.
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        policy = os.sched_getscheduler(pid)
    finally:
        await load.stop()
    assert nice == min(os.getpriority(os.PRIO_PROCESS, 0) + LOAD_NICE, NICEST)
    assert policy == os.SCHED_BATCH
    assert said == {"nice": nice, "policy": "SCHED_BATCH"}
    assert load.process.returncode == 0
