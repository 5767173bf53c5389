"""The console script: prints its URL on one line, reads RUNWARE_SIM_*, stops on SIGTERM."""

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx

from tests.sim.helpers import poll_until_done, send, video
from tests.waiting import DEADLINE_S

SCRIPT = Path(sys.executable).parent / "reelflow-runware-sim"


async def test_the_console_script_serves_on_a_free_port_until_sigterm() -> None:
    env = os.environ | {"RUNWARE_SIM_SPEEDUP": "1000", "RUNWARE_SIM_API_KEYS": "k-one, k-two"}
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "--port", "0", "--seed", "3", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEADLINE_S):
            line = (await process.stdout.readline()).decode()
        match = re.fullmatch(r"runware simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        headers = {"Authorization": "Bearer k-two"}
        async with httpx.AsyncClient(base_url=match[1], headers=headers) as http:
            task = video()
            assert (await send(http, task)).status_code == 200
            body = await poll_until_done(http, task["taskUUID"])  # 1000x: a tenth of a second
            assert body["data"][0]["videoURL"].startswith(match[1])
            assert (await http.get("/__sim/stats")).json()["seed"] == 3
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            returncode = await process.wait()

    assert returncode == 0
