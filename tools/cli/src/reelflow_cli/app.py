"""The commands. Each prints for people, or JSON with ``--json``; errors are one line, no traceback.

Exit codes: 0 done; 1 a watched project ended with failed or cancelled clips;
2 a bad argument (or a request the API found invalid); 3 the server is
unreachable; 4 no API key, or one that is not accepted; 5 no such project;
6 any other server error; 7 refused by the tenant's limits (a budget, a model
or a number of scenes not allowed): waiting does not help soon; 8 refused for
now (too many clips in flight, too many requests, a busy server): try again
after the wait it names; 130 stopped with Ctrl-C; 141 the reader of the output went away
(``| head``), as a program SIGPIPE ends.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from reelflow_cli import render
from reelflow_cli.client import Client, download, video_link
from reelflow_cli.config import load_config, require_key
from reelflow_cli.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED_CLIPS,
    EXIT_INTERRUPTED,
    EXIT_SERVER_ERROR,
    CliError,
    NotFound,
)
from reelflow_cli.watch import watch as watch_project

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="reelflow",
    help=(
        "Turn a story into video clips with reelflow, from the terminal.\n\n"
        "Server and key: REELFLOW_URL (default http://127.0.0.1:8000) and REELFLOW_API_KEY,"
        " or url and api_key in ~/.config/reelflow/config.toml (REELFLOW_CONFIG names"
        " another file).\n\n"
        "Scenes count from 0, in the order of the prompts: the API's scene_index, as the"
        " dashboard and reelflow-admin number them.\n\n"
        "Exit codes: 0 ok, 1 clips failed, 2 bad argument, 3 server unreachable,"
        " 4 API key missing or refused, 5 no such project, 6 other server error,"
        " 7 refused by a limit or budget, 8 busy or too much in flight: try again later."
        " 141 (128 + SIGPIPE): the output's reader went away (| head). 130: Ctrl-C."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Console(Console):
    """rich's console, but a reader that went away (``| head``) ends the command as
    :func:`_errors_as_exit_codes` says (141), not with rich's exit 1 (which says clips failed)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


# A pipe or a log gets whole lines: a terminal wraps them itself, rich would at 80 columns.
out = _Console(soft_wrap=True)
err = _Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="Print JSON for scripts; an error, too, as a line of JSON on stderr."
    ),
]
ProjectId = Annotated[
    str, typer.Argument(metavar="PROJECT_ID", help="The project's id.", show_default=False)
]


def _client() -> Client:
    config = load_config()
    return Client(config.url, require_key(config))


def _errors_as_exit_codes(command: Callable[P, R]) -> Callable[P, R]:
    """A ``CliError`` becomes one line on stderr and its exit code (with ``--json``, a line of
    JSON: the API's problem+json, or one like it); Ctrl-C exits 130; the output's reader gone
    (``| head``) exits 141, saying nothing."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            # Every command's --json is its parameter ``as_json`` (``JsonFlag``).
            if kwargs.get("as_json"):
                print(json.dumps(exc.as_json), file=sys.stderr, flush=True)
            else:
                err.print(f"[red]error:[/] {render.shown(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _drop_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None

    return run


def _drop_stdout() -> None:
    """Send what stdout still holds nowhere: flushed at exit into the closed pipe, it would
    fail again, with a message on stderr."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # a stdout that is no file (a test's): nothing to flush there
        pass


def _command(name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command whose ``CliError`` ends in a message and an exit code.

    The list of commands shows each one's whole first paragraph, in rich help and in plain
    help alike (click's own would cut it at its first sentence: cancel's says what is billed).
    """

    def register(function: Callable[P, R]) -> Callable[P, R]:
        summary = " ".join(inspect.cleandoc(function.__doc__ or "").partition("\n\n")[0].split())
        app.command(name=name, short_help=summary or None)(_errors_as_exit_codes(function))
        return function

    return register


@_command()
def create(
    prompts: Annotated[
        list[str],
        typer.Argument(
            metavar="PROMPT",
            help="One prompt per scene, in order: scene 0 first.",
            show_default=False,
        ),
    ],
    title: Annotated[str, typer.Option(metavar="TITLE", help="The project's title.")] = "",
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL", help="Runware model (AIR id); the server's default if omitted."
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds per clip; the server's default if omitted."),
    ] = None,
    negative_prompt: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="What no clip should show, for every scene; only a model that takes one"
            " (GET /v1/config says which, e.g. klingai:5@3).",
            show_default=False,
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Then follow it live.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a project: one clip per PROMPT.

    With --json, the project as the API answers it (POST /v1/projects). With --json and
    --watch, only the live messages, one JSON document a line (as watch --json prints them):
    the project's id is in the first line, a snapshot, at .project.project_id.
    """
    scenes: list[dict[str, Any]] = [{"prompt": prompt} for prompt in prompts]
    for scene in scenes:
        if negative_prompt is not None:
            scene["negative_prompt"] = negative_prompt
        if duration is not None:
            scene["duration"] = duration
    body: dict[str, Any] = {"title": title, "scenes": scenes}
    if model:
        body["model"] = model
    with _client() as client:
        project = client.create(body)
        if not watch:
            if as_json:
                render.print_json(project)
            else:
                render.project_summary(out, project)
            return
        if not as_json:
            out.print(f"Created {project['project_id']}; watching it (Ctrl-C stops watching).")
        _watch(client, project["project_id"], as_json)


@_command()
def watch(project_id: ProjectId, as_json: JsonFlag = False) -> None:
    """Follow a project live until every clip is done; exit 1 if any failed.

    A lost connection is tried again (said as "connection lost; reconnecting…": on stderr
    unless at a terminal; not said with --json) for about 60 to 120 s of waits between
    tries, then given up: exit 3.
    """
    with _client() as client:
        _watch(client, project_id, as_json)


#: `reelflow list`'s page size when --limit is not given
LIST_LIMIT = 20


@_command(name="list")
def list_projects(
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help="Only projects in this status (e.g. generating)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100, metavar="N", help="Projects per page (1 to 100).")
    ] = LIST_LIMIT,
    cursor: Annotated[
        str | None, typer.Option(metavar="CURSOR", help="The next page's cursor.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your projects, newest first."""
    with _client() as client:
        page = client.list(status=status, limit=limit, cursor=cursor)
    if as_json:
        render.print_json(page)
    else:
        shown_limit = None if limit == LIST_LIMIT else limit
        render.project_list(out, page, status=status, limit=shown_limit)


@_command()
def get(project_id: ProjectId, as_json: JsonFlag = False) -> None:
    """A project's status, its clips, and what each scene asked for (its prompt).

    With --json, the status as the API answers it (GET /v1/projects/ID).
    """
    with _client() as client:
        project = client.get(project_id)
        scenes = None if as_json else _scenes(client, project_id)
    if as_json:
        render.print_json(project)
    else:
        render.project_details(out, project, client.url, scenes=scenes)


def _scenes(client: Client, project_id: str) -> dict[str, Any] | None:
    """The project's scenes, or None: a server older than GET /v1/projects/ID/scenes answers
    404 (nothing said), and a failed read does not hide the status just read (said on stderr)."""
    try:
        return client.scenes(project_id)
    except NotFound:
        return None
    except CliError as exc:
        err.print(f"[yellow]prompts not shown:[/] {render.shown(str(exc))}", highlight=False)
        return None


@_command()
def retry(project_id: ProjectId, as_json: JsonFlag = False) -> None:
    """Give every failed clip a new task."""
    with _client() as client:
        project = client.retry(project_id)
    if as_json:
        render.print_json(project)
    else:
        render.project_summary(out, project)
        render.clips_changed(out, project, "retried", nothing="Nothing to retry: no clip failed.")


@_command()
def cancel(project_id: ProjectId, as_json: JsonFlag = False) -> None:
    """Stop every clip that has not finished. A clip Runware has started is billed all the same.

    In the first seconds after creating a project, every clip may be.
    """
    with _client() as client:
        project = client.cancel(project_id)
    if as_json:
        render.print_json(project)
    else:
        render.project_summary(out, project)
        render.clips_changed(
            out, project, "cancelled", nothing="Nothing to cancel: no clip is queued or processing."
        )
        render.cancel_billed(out, project)


@_command()
def usage(
    month: Annotated[
        str | None,
        typer.Option(metavar="YYYY-MM", help="UTC month as YYYY-MM; the current one if omitted."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """What you spent per day of a month, and the limits and budgets it counts against."""
    with _client() as client:
        report = client.usage(month)
    if as_json:
        render.print_json(report)
    else:
        render.usage(out, report)


@_command(name="download")
def download_videos(
    project_id: ProjectId,
    directory: Annotated[
        Path,
        typer.Argument(
            file_okay=False,
            metavar="DIRECTORY",
            help="Where to save the MP4s (created if needed).",
        ),
    ],
    as_json: JsonFlag = False,
    earlier: Annotated[
        bool,
        typer.Option(
            "--earlier",
            help="Also save the videos of a scene's earlier tasks (billed, then replaced by a"
            " retry or a cancel), named scene-NN-earlier-TASK.mp4.",
        ),
    ] = False,
) -> None:
    """Save the finished clips' MP4s into DIRECTORY, named by scene (scene-00-TASK.mp4 first).

    From reelflow's own copy when it has one (Runware's links expire), else from Runware.

    A video named with an invalid scene or task UUID is skipped with a warning (exit 6).
    """
    with _client() as client:
        project = client.get(project_id)
        base = client.url
    clips = project.get("results", [])
    ready = [
        (clip, link, "")
        for clip in clips
        if clip.get("status") == "success" and (link := video_link(clip, base))
    ]
    if earlier:
        ready += [
            ({"scene_index": clip.get("scene_index")} | attempt, link, "earlier-")
            for clip in clips
            for attempt in clip.get("attempts") or []
            if attempt.get("status") == "success" and (link := video_link(attempt, base))
        ]
    if not ready:
        status = project.get("status")
        if status in ENDED:  # no clip will finish now (but after a retry)
            raise CliError(
                f"no finished clip to download: the project ended ({render.visible(str(status))})",
                exit_code=EXIT_FAILED_CLIPS,
            )
        raise CliError("no finished clip to download yet", exit_code=EXIT_FAILED_CLIPS)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {directory}: {exc.strerror}", exit_code=2) from exc
    saved = []
    refused = 0
    for clip, source, kind in ready:
        try:
            scene, task, target = _video_file(directory, clip, kind)
        except CliError as exc:
            # The other clips are still worth saving; the exit code says one was not.
            refused += 1
            if not as_json:  # with --json, stderr holds the one error line at the end
                err.print(f"[yellow]warning:[/] {render.shown(str(exc))}", highlight=False)
            continue
        try:
            size = download(source, target)
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror}", exit_code=2) from exc
        saved.append(
            {
                "scene_index": scene,
                "task_uuid": task,
                "earlier": bool(kind),
                "path": str(target),
                "bytes": size,
            }
        )
        if not as_json:
            out.print(f"saved {target} ({size} bytes)", markup=False, highlight=False)
    skipped = len(clips) - sum(not kind for _, _, kind in ready)
    if as_json:
        render.print_json({"project_id": project_id, "saved": saved, "not_ready": skipped})
    elif skipped:
        out.print(f"{skipped} clip(s) not downloaded: not finished or not successful.")
    if refused:
        raise CliError(
            f"{refused} video(s) not downloaded: the server's answer named them with an"
            " invalid scene_index or task_uuid",
            exit_code=EXIT_SERVER_ERROR,
        )


#: a project's statuses once every clip has ended (``generating``: some have not)
ENDED = frozenset({"completed", "partial", "failed", "cancelled"})

#: the highest scene number a file is named with (the API allows far fewer scenes)
_MAX_SCENE_INDEX = 10_000


def _video_file(directory: Path, clip: render.Json, kind: str) -> tuple[int, str, Path]:
    """The scene, the task UUID and the file of a clip's video: ``scene-NN-[earlier-]TASK.mp4``
    in ``directory``, built only from a scene number and a task UUID in its canonical form.
    The server's text never becomes a path: a ``task_uuid`` of ``../../x`` would write outside
    ``directory``. A ``CliError`` (a server error) for a clip named otherwise."""
    scene, task = clip.get("scene_index"), clip.get("task_uuid")
    video = "an earlier video" if kind else "a video"
    # bool is an int to Python, not a scene number to the API
    if type(scene) is not int or not 0 <= scene <= _MAX_SCENE_INDEX:
        raise CliError(
            f"skipped {video}: the server sent scene_index {_excerpt(scene)}, not a scene number"
            f" (task_uuid {_excerpt(task)})"
        )
    try:
        if not isinstance(task, str):
            raise ValueError(task)
        canonical = str(uuid.UUID(task))
    except ValueError:
        raise CliError(
            f"skipped {video} of scene {scene}: the server sent task_uuid {_excerpt(task)},"
            " not a UUID"
        ) from None
    target = directory / f"scene-{scene:02d}-{kind}{canonical}.mp4"
    if target.parent.resolve() != directory.resolve():  # cannot happen; never write elsewhere
        raise CliError(f"skipped {video} of scene {scene}: {target} is not in {directory}")
    return scene, canonical, target


def _excerpt(value: object) -> str:
    """A value the server sent, as JSON would show it, cut short: it may be anything."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _watch(client: Client, project_id: str, as_json: bool) -> None:
    display: render.ClipBars | render.ClipLines | render.JsonLines
    if as_json:
        display = render.JsonLines()
    elif out.is_terminal:
        display = render.ClipBars(out)
    else:
        display = render.ClipLines(out, notices=err)

    async def follow() -> Any:
        return await watch_project(
            client, project_id, on_message=display.show, on_state=display.connection
        )

    if isinstance(display, render.ClipBars):
        with display:
            state = asyncio.run(follow())
    else:
        state = asyncio.run(follow())
    if not as_json:
        out.print(
            f"Finished: {render.styled(state.status)}, {state.completed} completed / "
            f"{state.pending} pending / {state.failed} failed of {state.total}",
            highlight=False,
        )
    if state.failed:
        raise typer.Exit(EXIT_FAILED_CLIPS)
