"""``make run`` twice in a row: each run finishes a project and stops promptly on Ctrl-C;
a clip in flight at the stop finishes in the next run, as Runware kept generating it.

The launcher runs as a process in a session of its own, as under a terminal; the
test reads what it prints, uses the printed dev key like a person would, and
stops it with the SIGINT a terminal's Ctrl-C sends to the foreground group.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from reelflow_common.broker.stacks import take_stack_lock
from reelflow_common.topology import Topology
from reelflow_devtools.cleanup import recorded_topology
from reelflow_devtools.devrun import WS_AUTH, config_from_environment, delete_queues, parse_args
from reelflow_devtools.launcher import Stack
from reelflow_devtools.processes import console_script
from reelflow_devtools.runfiles import ENV_FILE
from tests.consumers import consuming
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e

START_DEADLINE_S = 120
#: well under the 30 s a stop took when every service waited for its vanished database
STOP_DEADLINE_S = 15
FAST_SCENE = {"prompt": "a tram at dawn [sim:latency=10]", "duration": 4}
#: 15 s at make run's speedup: still generating when the first run stops
IN_FLIGHT_SCENE = {"prompt": "in flight at stop [sim:latency=150]", "duration": 4}


@dataclass
class Launched:
    process: asyncio.subprocess.Process
    printed: list[str]
    api_url: str
    dashboard_url: str
    ws_url: str
    dev_key: str
    sim_url: str


def _launcher_environment(amqp_url: str, prefix: str) -> dict[str, str]:
    """This process's environment as a developer's shell would have it for make run."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REELFLOW_", "RUNWARE_"))  # the defaults, as on a fresh shell
    }
    return env | {
        "REELFLOW_AMQP_URL": amqp_url,
        "REELFLOW_AMQP_PREFIX": prefix,  # its queues stay apart from other tests'
        "REELFLOW_LOG_FORMAT": "json",
    }


async def _read_until(process: asyncio.subprocess.Process, marker: str, printed: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(START_DEADLINE_S):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError("make run exited while starting:\n" + "".join(printed))
            printed.append(line)
            if marker in line:
                return


def _found(pattern: str, printed: list[str]) -> str:
    match = re.search(pattern, "".join(printed))
    assert match, f"{pattern!r} not in:\n{''.join(printed)}"
    return match.group(1)


async def _start(args: list[str], env: dict[str, str]) -> Launched:
    process = await asyncio.create_subprocess_exec(
        console_script("reelflow-dev"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a job in a terminal
    )
    printed: list[str] = []
    try:
        await _read_until(process, "Press Ctrl-C to stop.", printed)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return Launched(
        process,
        printed,
        api_url=_found(r"REST API\s+(http://\S+)/v1/projects", printed),
        dashboard_url=_found(r"Dashboard\s+(http://\S+/)\s", printed),
        ws_url=_found(r"WebSocket\s+(ws://\S+)/v1/ws/", printed),
        dev_key=_found(r"dev key\s+(rf_\S+)", printed),
        sim_url=_found(r"simulator at (http://\S+)", printed),
    )


async def _finish_a_project(launched: Launched) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {launched.dev_key}"}
    async with httpx.AsyncClient(base_url=launched.api_url, headers=headers, timeout=30) as api:
        # The printed dashboard is served, and sends browsers to the notifier's free port.
        page = await api.get(launched.dashboard_url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert (await api.get("/v1/config")).json()["ws_url"] == launched.ws_url
        created = await api.post("/v1/projects", json={"title": "twice", "scenes": [FAST_SCENE]})
        assert created.status_code == 202, created.text
        return await _finished(launched, created.json()["project_id"])


async def _finished(launched: Launched, project_id: str) -> dict[str, Any]:
    """The project's status once every clip has ended."""
    headers = {"Authorization": f"Bearer {launched.dev_key}"}
    async with httpx.AsyncClient(base_url=launched.api_url, headers=headers, timeout=30) as api:

        async def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get(f"/v1/projects/{project_id}")).json()
            return body if body["all_complete"] else None

        return await eventually_returns(
            finished, f"{project_id} finished", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )


async def _a_clip_generating(launched: Launched) -> str:
    """A new project whose one clip Runware is generating now; its id."""
    headers = {"Authorization": f"Bearer {launched.dev_key}"}
    async with httpx.AsyncClient(base_url=launched.api_url, headers=headers, timeout=30) as api:
        body = {"title": "in flight", "scenes": [IN_FLIGHT_SCENE]}
        created = await api.post("/v1/projects", json=body)
        assert created.status_code == 202, created.text
        project_id: str = created.json()["project_id"]

        async def processing() -> bool | None:
            status = (await api.get(f"/v1/projects/{project_id}")).json()
            return True if status["results"][0]["status"] == "processing" else None

        await eventually_returns(
            processing, f"{project_id} processing", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
        return project_id


async def _stored_link(launched: Launched, project_id: str) -> str:
    """The ``stored_url`` of the project's first clip, once its copy is stored."""
    headers = {"Authorization": f"Bearer {launched.dev_key}"}
    async with httpx.AsyncClient(base_url=launched.api_url, headers=headers, timeout=30) as api:

        async def stored() -> str | None:
            body = (await api.get(f"/v1/projects/{project_id}")).json()
            link: str | None = body["results"][0].get("stored_url")
            return link

        return await eventually_returns(
            stored, f"{project_id}'s copy", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )


async def _stop_with_ctrl_c(launched: Launched) -> str:
    os.killpg(launched.process.pid, signal.SIGINT)
    async with asyncio.timeout(STOP_DEADLINE_S):
        rest, _ = await launched.process.communicate()
    assert launched.process.returncode == 0, rest.decode()
    return rest.decode()


def _refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


async def _a_second_one_on_the_same_directory_says_so(
    args: list[str], env: dict[str, str], running: Launched
) -> None:
    second = await asyncio.create_subprocess_exec(
        console_script("reelflow-dev"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    async with asyncio.timeout(STOP_DEADLINE_S):
        printed, _ = await second.communicate()
    assert second.returncode == 1, printed.decode()
    said = printed.decode()
    assert f"already running from {args[1]} (process {running.process.pid}," in said
    assert "REELFLOW_AMQP_PREFIX=" in said  # how to start a second stack beside it
    assert "Traceback" not in said
    assert running.process.returncode is None  # the first one goes on


async def _the_admin_commands_act_on_it_with_its_env_file(
    launched: Launched, run_dir: Path
) -> None:
    """As the README says: ``reelflow-admin --env-file .run/env``, from a fresh shell."""
    env_file = run_dir / ENV_FILE
    assert f"--env-file {env_file}" in "".join(launched.printed)
    shell = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REELFLOW_", "RUNWARE_"))
    }

    async def admin(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            console_script("reelflow-admin"),
            "--env-file",
            str(env_file),
            *args,
            env=shell,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(PROCESS_DEADLINE_S):
            said, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, said.decode()

    headers = {"Authorization": f"Bearer {launched.dev_key}"}
    async with httpx.AsyncClient(base_url=launched.api_url, headers=headers, timeout=30) as api:
        hanging = {"title": "stuck", "scenes": [{"prompt": "never ends [sim:hang]"}]}
        project_id = (await api.post("/v1/projects", json=hanging)).json()["project_id"]

        async def processing() -> bool | None:
            body = (await api.get(f"/v1/projects/{project_id}")).json()
            return True if body["results"][0]["status"] == "processing" else None

        await eventually_returns(
            processing, f"{project_id} processing", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
        code, said = await admin("reconcile", project_id)
        assert code == 0, said
        assert "Runware: processing  check re-armed (lease until " in said
        code, said = await admin("assets", "retry", "--failed")
        assert code == 0, said
        assert "REELFLOW_STORAGE_BACKEND is none here" not in said
        await api.post(f"/v1/projects/{project_id}/cancel")


async def test_make_run_twice_finishes_a_project_each_time_and_stops_promptly(
    amqp_url: str, tmp_path: Path
) -> None:
    prefix = f"makerun-{uuid.uuid4().hex[:8]}."
    env = _launcher_environment(amqp_url, prefix)
    run_dir = tmp_path / "run"
    seen_sim_urls = []
    seen_urls: set[tuple[str, str]] = set()
    project_ids = []
    stored_links: list[str] = []
    runware_links: list[str] = []
    in_flight = ""
    args = ["--run-dir", str(run_dir), "--free-ports"]
    try:
        for _run in range(2):
            launched = await _start(args, env)
            try:
                project = await _finish_a_project(launched)
            except BaseException:
                launched.process.kill()
                await launched.process.wait()
                raise
            assert project["status"] == "completed", project
            # The banner shows docs/API.md's ways to open a WebSocket, not the legacy ?token=.
            assert WS_AUTH in "".join(launched.printed)
            assert "token=" not in "".join(launched.printed)
            # On a free port the api is not where the CLI looks by default: it says where.
            assert f"export REELFLOW_URL={launched.api_url}" in "".join(launched.printed)
            # The link the first run handed out plays in the second too: it is valid a day.
            stored_links.append(await _stored_link(launched, project["project_id"]))
            # So do Runware's links (its videos are kept until their ttl, none here).
            runware_links.append(project["results"][0]["video_url"])
            async with httpx.AsyncClient(base_url=launched.api_url, timeout=30) as videos:
                for link in stored_links + runware_links:
                    assert (await videos.get(link)).status_code == 200, link
            if _run == 0:
                await _a_second_one_on_the_same_directory_says_so(args, env, launched)
                await _the_admin_commands_act_on_it_with_its_env_file(launched, run_dir)
                in_flight = await _a_clip_generating(launched)
            else:
                # Submitted before the stop; the simulator kept it, as Runware would have.
                ended = await _finished(launched, in_flight)
                assert ended["status"] == "completed", ended
            rest = await _stop_with_ctrl_c(launched)
            assert not (run_dir / ENV_FILE).exists()  # its ports are gone with it

            assert "reelflow: stopped in" in rest
            assert _refuses_connections(launched.api_url)
            assert _refuses_connections(launched.sim_url)
            seen_sim_urls.append(launched.sim_url)
            seen_urls.add((launched.api_url, launched.ws_url))
            project_ids.append(project["project_id"])
            # This run's logs hold this run's lines only (but for its requests of older videos).
            api_log = "\n".join(
                line
                for line in (run_dir / "logs" / "api.log").read_text().splitlines()
                if "/v1/videos/" not in line
            )
            assert project_ids[-1] in api_log
            assert all(earlier not in api_log for earlier in project_ids[:-1])
        # make clean: what both runs declared goes, as their run directory recorded it.
        recorded = recorded_topology(run_dir)
        assert recorded is not None
        assert recorded.amqp_prefix == prefix
        cleaning = parse_args(["--delete-queues", "--run-dir", str(run_dir)])
        assert await asyncio.to_thread(delete_queues, cleaning, env) == 0
        assert await _existing(amqp_url, Topology.from_settings(recorded).queue_names()) == []
    finally:
        await Stack(config_from_environment(parse_args(args), env)).delete_queues()
    # The simulator listened on the same port the second time: its videoURLs stayed valid.
    assert len(set(seen_sim_urls)) == 1
    # So did the services (--free-ports keeps the first run's ports): the URLs stayed.
    assert len(seen_urls) == 1, seen_urls


async def _existing(amqp_url: str, names: list[str]) -> list[str]:
    """The queues of ``names`` on the broker."""
    connection = await aio_pika.connect(amqp_url, timeout=15)
    try:
        return [name for name in names if await _queue_exists(connection, name)]
    finally:
        await connection.close()


async def _queue_exists(connection: AbstractConnection, name: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    return True


async def _launched_to_be_refused(amqp_url: str, prefix: str, run_dir: Path) -> str:
    """What a ``make run`` on ``prefix`` printed before it exited, refused (exit code 1)."""
    launcher = await asyncio.create_subprocess_exec(
        console_script("reelflow-dev"),
        *["--run-dir", str(run_dir), "--free-ports"],
        env=_launcher_environment(amqp_url, prefix),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(START_DEADLINE_S):
            printed, _ = await launcher.communicate()
    finally:
        if launcher.returncode is None:  # it started after all: stopped as Ctrl-C would
            os.killpg(launcher.pid, signal.SIGINT)
            await launcher.wait()
    said = printed.decode()
    assert launcher.returncode == 1, said
    assert 'make run RUN_ARGS="--run-dir .run/' in said  # a prefix and directory of its own
    assert "Traceback" not in said
    assert not (run_dir / "mongo-data").exists()  # refused before anything of it started
    return said


async def test_make_run_refuses_a_queue_prefix_another_stack_consumes_from(
    amqp_url: str, tmp_path: Path
) -> None:
    """Two stacks on one prefix would take each other's work: the second one does not start."""
    prefix = f"makerun-{uuid.uuid4().hex[:8]}."
    async with consuming(amqp_url, prefix) as queue:
        said = await _launched_to_be_refused(amqp_url, prefix, tmp_path / "run")

    assert f"another reelflow consumes the queues of REELFLOW_AMQP_PREFIX='{prefix}'" in said
    assert f"{queue} (1 consumer)" in said


async def test_make_run_refuses_a_queue_prefix_whose_launcher_is_still_starting(
    amqp_url: str, tmp_path: Path
) -> None:
    """Nothing consumes yet, but that launcher holds the prefix's lock: refused all the same."""
    prefix = f"makerun-{uuid.uuid4().hex[:8]}."
    other = await aio_pika.connect(amqp_url, timeout=15)  # as that launcher's lock connection
    try:
        assert await take_stack_lock(await other.channel(), Topology.named(prefix))
        said = await _launched_to_be_refused(amqp_url, prefix, tmp_path / "run")
    finally:
        await other.close()

    assert f"another reelflow runs on the queues of REELFLOW_AMQP_PREFIX='{prefix}'" in said
    assert f"its launcher holds {prefix}stack.lock" in said


def _child_running(parent: int, module: str) -> int:
    """The pid of ``parent``'s child whose command line names ``module`` (Linux's /proc)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise AssertionError(f"no child of {parent} runs {module}: {children}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the database's process in /proc")
async def test_make_run_stops_saying_so_when_its_embedded_database_dies(
    amqp_url: str, tmp_path: Path
) -> None:
    """As when a service dies: the stack is not left running without its database."""
    prefix = f"makerun-{uuid.uuid4().hex[:8]}."
    env = _launcher_environment(amqp_url, prefix)
    args = ["--run-dir", str(tmp_path / "run"), "--free-ports"]
    try:
        launched = await _start(args, env)
        try:
            mongo = _child_running(launched.process.pid, "reelflow_devtools.secantusd")
            os.kill(mongo, signal.SIGKILL)
            async with asyncio.timeout(START_DEADLINE_S):
                rest, _ = await launched.process.communicate()
        finally:
            if launched.process.returncode is None:
                launched.process.kill()
                await launched.process.wait()
        said = rest.decode()
        assert launched.process.returncode == 1, said
        assert "mongo was killed by SIGKILL (exit code -9)" in said
        assert "reelflow: stopped in" in said
        assert _refuses_connections(launched.api_url)
    finally:
        await Stack(config_from_environment(parse_args(args), env)).delete_queues()
