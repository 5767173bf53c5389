"""The ``reelflow`` command line against the whole stack, as a person and as a script use it.

What a terminal shows is read through a pseudo-terminal (pexpect) and rendered by a
terminal emulator (pyte), so the assertions are about the screen, not escape codes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pyte
import pytest
from pexpect.popen_spawn import PopenSpawn

from reelflow_devtools.launcher import Stack
from reelflow_devtools.processes import console_script
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns

pytestmark = pytest.mark.e2e

REELFLOW = console_script("reelflow")
COLUMNS, LINES = 100, 40


@pytest.fixture
def env(shared_stack: Stack, tmp_path: Path) -> dict[str, str]:
    """A tenant of the test's own; HOME in a temporary folder, so no real config file is read."""
    key = asyncio.run(shared_stack.issue_key("cli"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REELFLOW_", "XDG_"))}
    return clean | {
        "HOME": str(tmp_path),
        "REELFLOW_URL": shared_stack.api_url,
        "REELFLOW_API_KEY": key,
        "COLUMNS": str(COLUMNS),
    }


def reelflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a script would: no terminal, output captured."""
    return subprocess.run(
        [REELFLOW, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
        check=False,
    )


def in_terminal(env: dict[str, str], *args: str) -> tuple[list[str], int]:
    """Run the CLI in a pseudo-terminal; the screen it leaves, and its exit status."""
    child = pexpect.spawn(
        REELFLOW,
        list(args),
        env=env | {"TERM": "xterm-256color"},
        dimensions=(LINES, COLUMNS),
        encoding="utf-8",
        timeout=PROCESS_DEADLINE_S,
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = pyte.Screen(COLUMNS, LINES)
    pyte.Stream(screen).feed(child.before or "")
    lines = [line.rstrip() for line in screen.display]
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return [line for line in lines if line], child.exitstatus


def created(env: dict[str, str], *prompts: str, title: str = "cli") -> dict[str, Any]:
    answer = reelflow(env, "create", *prompts, "--title", title, "--json")
    assert answer.returncode == 0, answer.stderr
    project: dict[str, Any] = json.loads(answer.stdout)
    return project


def first_clip_succeeded(env: dict[str, str], project_id: str) -> None:
    """Wait until the project's first clip has succeeded, as the API says."""

    async def first_clip_done() -> bool | None:
        async with httpx.AsyncClient() as http:
            got = await http.get(
                f"{env['REELFLOW_URL']}/v1/projects/{project_id}",
                headers={"Authorization": f"Bearer {env['REELFLOW_API_KEY']}"},
            )
        return True if got.json()["results"][0]["status"] == "success" else None

    asyncio.run(
        eventually_returns(
            first_clip_done, "the first clip done", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
        )
    )


# --- a person at a terminal ---------------------------------------------------------


def test_create_and_watch_shows_a_bar_per_clip_and_ends_finished(env: dict[str, str]) -> None:
    screen, status = in_terminal(
        env,
        "create",
        "tram at dawn [sim:latency=20]",
        "sunset over the river [sim:latency=40]",
        "fado singer [sim:latency=30]",
        "--title",
        "Trip to Lisbon",
        "--watch",
    )

    assert status == 0, screen
    text = "\n".join(screen)
    assert "Trip to Lisbon" in text
    bars = [line for line in screen if line.lstrip().startswith("scene ")]
    assert [line.split()[1] for line in bars] == ["0", "1", "2"], text
    assert all("━" in line and line.endswith("done") for line in bars), text
    assert screen[-1] == "Finished: completed, 3 completed / 0 pending / 0 failed of 3"
    assert "Traceback" not in text


def test_a_failed_clip_shows_its_error_and_the_exit_status_is_1(env: dict[str, str]) -> None:
    project = created(env, "ok [sim:latency=10]", "bad [sim:latency=20][sim:fail=timeoutProvider]")

    screen, status = in_terminal(env, "watch", project["project_id"])

    assert status == 1
    scene_1 = [line for line in screen if line.lstrip().startswith("scene 1")]
    assert len(scene_1) == 1, screen
    [failed] = scene_1
    assert "failed" in failed
    assert "timeoutProvider" in failed
    assert screen[-1] == "Finished: partial, 1 completed / 0 pending / 1 failed of 2"


def test_get_shows_the_cost_and_a_retried_scenes_earlier_task(env: dict[str, str]) -> None:
    project = created(env, "ok [sim:latency=10]", "bad [sim:latency=20][sim:fail=timeoutProvider]")
    project_id = project["project_id"]
    first_task = project["results"][1]["task_uuid"]
    assert reelflow(env, "watch", project_id).returncode == 1
    assert reelflow(env, "retry", project_id).returncode == 0
    assert reelflow(env, "watch", project_id).returncode == 1  # the simulator fails it again

    shown = reelflow(env | {"COLUMNS": "200"}, "get", project_id)

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    usd = json.loads(reelflow(env, "get", project_id, "--json").stdout)["cost"]["usd"]
    assert f"cost ${usd:.2f}" in lines
    [earlier] = [line for line in lines if "earlier: failed" in line]
    assert first_task in earlier
    assert "timeoutProvider" in earlier
    # Which prompt failed, as the API has it (GET /v1/projects/{id}/scenes).
    [prompt] = [line for line in lines if line.startswith("scene 1 (")]
    assert prompt.endswith("): bad [sim:latency=20][sim:fail=timeoutProvider]")


def test_a_negative_prompt_goes_with_every_scene(env: dict[str, str]) -> None:
    answer = reelflow(
        env,
        "create",
        "a tram [sim:hang]",
        "a ferry [sim:hang]",
        "--model",
        "klingai:5@3",
        "--negative-prompt",
        "blurry, [text] on screen",
        "--json",
    )
    assert answer.returncode == 0, answer.stderr
    project_id = json.loads(answer.stdout)["project_id"]

    shown = reelflow(env | {"COLUMNS": "200"}, "get", project_id)

    assert shown.returncode == 0, shown.stderr
    prompts = [line for line in shown.stdout.splitlines() if re.match(r"scene \d+ \(", line)]
    assert [line.split(": ", 1)[1] for line in prompts] == [
        "a tram [sim:hang] (negative: blurry, [text] on screen)",
        "a ferry [sim:hang] (negative: blurry, [text] on screen)",
    ]
    assert reelflow(env, "cancel", project_id).returncode == 0


def test_usage_shows_what_the_month_cost_by_day(env: dict[str, str]) -> None:
    project = created(env, "one [sim:latency=10]", "two [sim:latency=10]", title="spend")
    assert reelflow(env, "watch", project["project_id"]).returncode == 0
    cost = json.loads(reelflow(env, "get", project["project_id"], "--json").stdout)["cost"]

    report = json.loads(reelflow(env, "usage", "--json").stdout)
    shown = reelflow(env, "usage")

    assert report["month"]["usd"] == pytest.approx(cost["usd"])
    assert report["month"]["known_cost_clips"] == 2
    assert [day["usd"] for day in report["days"]] == [pytest.approx(cost["usd"])]
    assert shown.returncode == 0, shown.stderr
    assert f"${cost['usd']:,.2f} over 2 priced clip(s)" in shown.stdout
    assert "no limits set" in shown.stdout


def test_list_in_a_terminal_fits_it_and_in_a_pipe_prints_whole_lines(env: dict[str, str]) -> None:
    title = "a title too long for eighty columns, surely, and whole in a pipe"
    project = created(env, "one [sim:hang]", title=title)

    screen, status = in_terminal(env, "list")
    piped = reelflow(env | {"COLUMNS": "80"}, "list")  # not a terminal: no width to fit

    assert status == 0
    header, row = screen
    assert header.split()[:2] == ["project", "title"]
    assert "status" in header.split()
    assert row.startswith(f"{project['project_id']}  a title")
    assert " generating " in row
    assert title not in row  # shortened to fit the screen
    assert piped.returncode == 0, piped.stderr
    header, row = piped.stdout.splitlines()
    assert header.split() == ["project", "title", "status", "clips", "created"]
    assert row.startswith(f"{project['project_id']}  {title}  generating  0/1 done  ")


# --- scripts ------------------------------------------------------------------------------


def test_every_command_speaks_json(env: dict[str, str], tmp_path: Path) -> None:
    project = created(env, "one [sim:latency=10]", "two [sim:hang]", title="for scripts")
    project_id = project["project_id"]
    assert project["total_clips"] == 2

    listed = json.loads(reelflow(env, "list", "--json").stdout)
    assert [item["project_id"] for item in listed["items"]] == [project_id]

    first_clip_succeeded(env, project_id)
    cancelled = json.loads(reelflow(env, "cancel", project_id, "--json").stdout)
    assert cancelled["status"] == "cancelled"

    got = json.loads(reelflow(env, "get", project_id, "--json").stdout)
    assert [clip["status"] for clip in got["results"]] == ["success", "cancelled"]
    retried = json.loads(reelflow(env, "retry", project_id, "--json").stdout)
    assert retried["project_id"] == project_id

    saved = reelflow(env, "download", project_id, str(tmp_path / "videos"), "--json")
    assert saved.returncode == 0, saved.stderr
    report = json.loads(saved.stdout)
    assert report["not_ready"] == 1
    [video] = report["saved"]
    data = Path(video["path"]).read_bytes()
    assert data[4:8] == b"ftyp"  # an MP4 file
    assert len(data) == video["bytes"] > 1000
    assert Path(video["path"]).name.startswith("scene-00-")

    # Live: the snapshot, then the changes another client (cancel) makes, to the finish.
    live = created(env, "three [sim:hang]")
    watcher = subprocess.Popen(
        [REELFLOW, "watch", live["project_id"], "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["type"] == "snapshot"
        assert reelflow(env, "cancel", live["project_id"]).returncode == 0
        rest, _ = watcher.communicate(timeout=PROCESS_DEADLINE_S)
    finally:
        watcher.kill()
    messages = [json.loads(line) for line in rest.splitlines()]
    # Meanwhile the hanging task's progress may have been stored (a clip.updated each).
    *progress, cancelled, finished = messages
    assert all("progress" in message["clip"] for message in progress), progress
    assert (cancelled["type"], cancelled["clip"]["status"]) == ("clip.updated", "cancelled")
    assert finished["type"] == "project.finished"
    assert finished["status"] == "cancelled"
    assert watcher.returncode == 1  # a cancelled clip is a clip not made


def test_watch_without_a_terminal_prints_one_line_per_change(env: dict[str, str]) -> None:
    project = created(env, "a [sim:latency=10]", "b [sim:latency=30]")

    watched = reelflow(env, "watch", project["project_id"])

    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[-1] == "Finished: completed, 2 completed / 0 pending / 0 failed of 2"
    assert "scene 0: success" in lines
    assert "scene 1: success" in lines
    assert "\x1b[" not in watched.stdout  # no escape codes in a pipe


def test_watch_rides_out_a_notifier_restart(env: dict[str, str], shared_stack: Stack) -> None:
    # The second clip runs until the watcher has said it lost its connection and the test
    # cancels it: with both clips timed, a loaded machine let the project finish before the
    # notifier's restart, and the watch ended without ever reconnecting (CI).
    project = created(env, "a [sim:latency=100]", "b [sim:hang]")
    watcher = PopenSpawn(
        [REELFLOW, "watch", project["project_id"]],
        env=env,
        encoding="utf-8",
        timeout=PROCESS_DEADLINE_S,
    )
    try:
        watcher.expect("scene 0: ")  # it is connected once it has shown something
        shared_stack.kill_hard("notifier")
        watcher.expect("connection lost; reconnecting")
        shared_stack.start_service("notifier")
        first_clip_succeeded(env, project["project_id"])
        cancelled = reelflow(env, "cancel", project["project_id"])
        assert cancelled.returncode == 0, cancelled.stderr

        watcher.expect(r"Finished: (\w+), (.*) of 2")
        match = watcher.match
        assert isinstance(match, re.Match)
        finished = (match.group(1), match.group(2))
        lines = watcher.before or ""
        watcher.expect(pexpect.EOF)
    finally:
        watcher.kill(signal.SIGKILL)
        exit_code = watcher.proc.wait()
        for pipe in (watcher.proc.stdin, watcher.proc.stdout):
            if pipe is not None:
                pipe.close()
    assert finished == ("cancelled", "1 completed / 0 pending / 1 failed")
    assert exit_code == 1  # a clip did not succeed: cancelled
    assert "scene 1: cancelled" in lines


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "args", "code", "says"),
    [
        ({"REELFLOW_API_KEY": "rf_wrong"}, ["list"], 4, "the API key was not accepted"),
        ({"REELFLOW_API_KEY": ""}, ["list"], 4, "no API key: set REELFLOW_API_KEY"),
        ({"REELFLOW_URL": "http://127.0.0.1:9"}, ["list"], 3, "cannot reach reelflow"),
        ({}, ["get", "no-such-project"], 5, "no such project"),
        ({}, ["create", "a tram", "--duration", "1000"], 2, "scenes.0.duration"),
        (
            {},
            ["create", "a tram", "--duration", "5"],
            2,
            "scenes.0.duration: not a duration this model makes: google:3@3 (allowed: 4, 6, 7, 8)",
        ),
        (
            {},
            ["create", "a tram", "--negative-prompt", "blurry"],
            2,
            "scenes.0.negative_prompt: this model takes no negative prompt",
        ),
        (
            {},
            ["create", "a tram", "--model", "veo3"],
            2,
            "model: should be a Runware AIR id (provider:model@version), such as google:3@3",
        ),
        (
            {},
            ["usage", "--month", "2026-13"],
            2,
            "month: should be a UTC month as YYYY-MM (1970-01 to 2999-12), such as 2026-12",
        ),
        ({}, ["create"], 2, "Missing argument"),
        ({}, ["list", "--limit", "500"], 2, "--limit"),
        ({}, ["download", "no-such-project", "videos"], 5, "no such project"),
    ],
)
def test_errors_are_one_clear_message_and_an_exit_code(
    env: dict[str, str], change: dict[str, str], args: list[str], code: int, says: str
) -> None:
    answer = reelflow(env | change, *args)

    assert answer.returncode == code, answer.stderr
    assert says in answer.stderr
    assert "Traceback" not in answer.stderr + answer.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(env: dict[str, str]) -> None:
    """``reelflow list | head -1`` whose head has exited: no message, and not 1 (clips
    failed) but 141, as a shell says of a program SIGPIPE ended."""
    created(env, "one [sim:hang]", title="piped")
    reader, writer = os.pipe()
    os.close(reader)  # gone before the command writes a line: every write fails (EPIPE)
    try:
        listed = subprocess.run(
            [REELFLOW, "list"],
            env=env,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROCESS_DEADLINE_S,
            check=False,
        )
    finally:
        os.close(writer)

    assert listed.returncode == 141
    assert listed.stderr == ""


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
def test_a_watch_whose_reader_goes_away_ends_at_once_with_141(
    env: dict[str, str], as_json: bool
) -> None:
    """``reelflow watch P | head -1``: the failed write to the gone reader ends it with 141,
    not taken for a lost connection to reconnect (it asked for ticket after ticket, and a
    project that never finished kept it running)."""
    project = created(env, "one [sim:hang]", title="piped watch")
    reader, writer = os.pipe()
    os.close(reader)
    try:
        watched = subprocess.run(
            [REELFLOW, "watch", project["project_id"], *(["--json"] if as_json else [])],
            env=env,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROCESS_DEADLINE_S,  # the clip hangs: only the broken pipe ends the watch
            check=False,
        )
    finally:
        os.close(writer)

    assert watched.returncode == 141, watched.stderr
    assert watched.stderr == ""


def test_help_in_a_pipe_is_plain_text(env: dict[str, str]) -> None:
    helped = reelflow(env, "--help")

    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: reelflow [OPTIONS] COMMAND [ARGS]...")
    assert not set(helped.stdout) & set("─│╭╮╰╯"), helped.stdout
    # Each command's whole summary: cancel's says what is billed all the same.
    text = " ".join(helped.stdout.split())
    assert (
        "cancel Stop every clip that has not finished. A clip Runware has started is billed"
        " all the same."
    ) in text
    # At a terminal, rich's panels.
    screen, status = in_terminal(env, "--help")
    assert status == 0
    assert any(line.startswith("╭─ Commands") for line in screen), screen


def test_the_config_file_is_read_when_the_environment_is_silent(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / ".config" / "reelflow" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{env["REELFLOW_URL"]}"\napi_key = "{env["REELFLOW_API_KEY"]}"\n')
    silent = {k: v for k, v in env.items() if not k.startswith("REELFLOW_")}

    answer = reelflow(silent, "list", "--json")

    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["items"] == []
