"""`state_file`: the simulator keeps its tasks across a restart, as Runware keeps running them.

A task accepted before the stop is found after it and finishes at its due time (at once
if that passed meanwhile); a video served before the stop serves after it, on the same
port, until its ttl; the file is written at stop and now and then, never per request.
"""

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from reelflow_devtools.ports import free_port
from reelflow_runware_sim.testing import running_simulator
from tests.sim.helpers import client_for, poll, poll_until_done, send, video
from tests.sim.receiver import webhook_receiver
from tests.waiting import DEADLINE_S, eventually

SCRIPT = Path(sys.executable).parent / "reelflow-runware-sim"


async def _start_script(
    state_file: Path, speedup: str, port: int = 0
) -> tuple[asyncio.subprocess.Process, str]:
    """The console script on ``port`` (0: the one its state file keeps, else the kernel's)."""
    env = os.environ | {"RUNWARE_SIM_SPEEDUP": speedup}
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "--port",
        str(port),
        "--state-file",
        str(state_file),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(DEADLINE_S):
        line = (await process.stdout.readline()).decode()
    match = re.fullmatch(r"runware simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
    assert match, line
    return process, match[1]


async def _stop_script(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(DEADLINE_S):
        return await process.wait()


def _shift_back(state_file: Path, seconds: float) -> None:
    """Make the saved tasks as old as if the simulator had been down `seconds` longer."""
    saved = json.loads(state_file.read_text())
    for task in saved["tasks"]:
        task["submitted_at"] -= seconds
    state_file.write_text(json.dumps(saved))


async def test_a_task_in_flight_at_sigterm_is_found_after_the_restart_and_finishes(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "sim-state.json"
    headers = {"Authorization": "Bearer sim-key"}
    # 1000 simulated seconds at 100x: due 10 s after its submit, well after the restart.
    slow = video("in flight at stop [sim:latency=1000]")
    done = video("done before the stop [sim:latency=0]")
    # A port no other process is handed while it is stopped (as make run picks it): a
    # kernel-picked one could be taken by any outgoing connection in between.
    process, first_url = await _start_script(state_file, speedup="100", port=free_port())
    try:
        async with httpx.AsyncClient(base_url=first_url, headers=headers) as http:
            assert (await send(http, slow, done)).status_code == 200
            finished = await poll_until_done(http, done["taskUUID"])
            video_path = httpx.URL(finished["data"][0]["videoURL"]).path
            assert (await http.get(video_path)).status_code == 200
    finally:
        assert await _stop_script(process) == 0
    stopped = time.monotonic()
    assert state_file.exists()

    process, second_url = await _start_script(state_file, speedup="100")
    try:
        async with httpx.AsyncClient(base_url=second_url, headers=headers) as http:
            asked = time.monotonic()
            truth = (await http.get(f"/__sim/tasks/{slow['taskUUID']}")).json()
            assert truth["accepted"] is True
            # Its clock ran on while the simulator was down: it did not start again.
            assert truth["elapsed_seconds"] >= asked - stopped
            answer = await send(http, poll(slow["taskUUID"]))
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"][0]["status"] == "processing"
            body = await poll_until_done(http, slow["taskUUID"])
            assert body["data"][0]["status"] == "success"
            # The earlier run's videoURL still serves: same port, video kept.
            assert second_url == first_url
            assert (await http.get(video_path)).status_code == 200
            conflict = await send(http, slow)  # still known: a resubmit conflicts
            assert conflict.json()["errors"][0]["code"] == "conflictTaskUUID"
    finally:
        assert await _stop_script(process) == 0


async def test_a_task_due_while_the_simulator_was_down_is_done_at_once(tmp_path: Path) -> None:
    state_file = tmp_path / "sim-state.json"
    async with running_simulator(speedup=1, state_file=state_file) as sim, client_for(sim) as http:
        task = video("a long one [sim:latency=600]")
        await send(http, task)
    _shift_back(state_file, 601)

    async with running_simulator(speedup=1, state_file=state_file) as sim, client_for(sim) as http:
        body = (await send(http, poll(task["taskUUID"]))).json()

    assert body["data"][0]["status"] == "success"


async def test_a_fail_once_prompt_that_failed_before_a_restart_succeeds_after_it(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "sim-state.json"
    prompt = "[sim:latency=0] [sim:fail=once] a storm"
    first, retry = video(prompt), video(prompt)
    async with running_simulator(speedup=1, state_file=state_file) as sim, client_for(sim) as http:
        await send(http, first)
        failed = await poll_until_done(http, first["taskUUID"])

    async with running_simulator(speedup=1, state_file=state_file) as sim, client_for(sim) as http:
        await send(http, retry)
        retried = await poll_until_done(http, retry["taskUUID"])

    assert [error["code"] for error in failed["errors"]] == ["timeoutProvider"]
    assert [item["status"] for item in retried["data"]] == ["success"]


async def test_a_kept_video_serves_until_its_ttl_counted_across_the_stop(tmp_path: Path) -> None:
    state_file = tmp_path / "sim-state.json"
    settings: dict[str, Any] = {"speedup": 1, "video_url_ttl": 60, "state_file": state_file}
    async with running_simulator(**settings) as sim, client_for(sim) as http:
        task = video("[sim:latency=0] a kite")
        await send(http, task)
        link = httpx.URL((await poll_until_done(http, task["taskUUID"]))["data"][0]["videoURL"])

    async with running_simulator(**settings) as sim, client_for(sim) as http:
        assert (await http.get(link.path)).status_code == 200
    _shift_back(state_file, 61)  # down past the ttl: Runware's link would have expired too

    async with running_simulator(**settings) as sim, client_for(sim) as http:
        assert (await http.get(link.path)).status_code == 404
        assert (await sim.stats())["endpoints"]["GET /video expired"] == 1


async def test_the_file_is_written_at_stop_and_periodically_never_per_request(
    tmp_path: Path,
) -> None:
    rarely, often = tmp_path / "rarely.json", tmp_path / "often.json"
    async with running_simulator(speedup=1000, state_file=rarely, state_save_interval=3600) as sim:
        async with client_for(sim) as http:
            await send(http, video())
            await poll_until_done(http, (await sim.tasks())[0]["task_uuid"])
        assert not rarely.exists()
    assert len(json.loads(rarely.read_text())["tasks"]) == 1
    assert rarely.stat().st_mode & 0o777 == 0o600  # its tasks' webhookURLs hold a secret

    async with running_simulator(speedup=1000, state_file=often, state_save_interval=0.05) as sim:
        async with client_for(sim) as http:
            await send(http, video())

        def saved() -> bool:
            return often.exists() and len(json.loads(often.read_text())["tasks"]) == 1

        await eventually(saved, "the periodic save")


async def test_a_webhook_not_yet_sent_at_the_stop_is_sent_after_the_restart(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "sim-state.json"
    async with webhook_receiver() as receiver:
        early = video("[sim:latency=0] sent before the stop", webhookURL=receiver.url)
        late = video("[sim:latency=600] due after the stop", webhookURL=receiver.url)
        async with running_simulator(speedup=1, state_file=state_file) as sim:
            async with client_for(sim) as http:
                await send(http, early, late)
            async with asyncio.timeout(DEADLINE_S):
                # Its delivery ends as this is seen: nothing to send again after the restart.
                await sim.wait_for(
                    lambda: sim.state.tasks[early["taskUUID"]].webhook_deliveries == 1
                )
        _shift_back(state_file, 600)

        async with running_simulator(speedup=1, state_file=state_file) as sim:
            async with asyncio.timeout(DEADLINE_S):
                calls = await receiver.wait_for_calls(2)
                await sim.wait_for(
                    lambda: sim.state.tasks[late["taskUUID"]].webhook_deliveries == 1
                )

    assert [call.body["data"][0]["taskUUID"] for call in calls] == [
        early["taskUUID"],
        late["taskUUID"],
    ]
    assert sim.state.tasks[early["taskUUID"]].webhook_deliveries == 1  # kept, not sent again


async def test_an_unreadable_file_is_set_aside_and_the_simulator_starts_empty(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "sim-state.json"
    state_file.write_text("{not json")

    async with running_simulator(speedup=1000, state_file=state_file) as sim:
        assert sim.state.tasks == {}

    assert (tmp_path / "sim-state.json.unreadable").read_text() == "{not json"
    assert json.loads(state_file.read_text())["tasks"] == []
