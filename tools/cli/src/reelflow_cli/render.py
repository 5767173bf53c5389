"""What a person sees: tables, and one progress bar per clip while a project is watched."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.segment import Segment, Segments
from rich.table import Column, Table

from reelflow_cli.client import video_link
from reelflow_cli.project import ClipState, ProjectState
from reelflow_cli.times import utc_minute

STYLES = {
    "queued": "dim",
    "processing": "yellow",
    "generating": "yellow",
    "success": "green",
    "completed": "green",
    "partial": "yellow",
    "failed": "red",
    "cancelled": "red",
}

Json = dict[str, Any]
#: wide enough to measure any table's natural width
_UNBOUNDED = 100_000


#: what a terminal acts on rather than shows: C0 controls but newline and tab (ESC starts the
#: sequences that clear the screen, retitle the window or write the clipboard), DEL, C1
#: controls, and the bidirectional overrides and isolates (which reorder what follows)
_ACTED_ON = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """Text the API sent (a title, a prompt, an error) with each character a terminal would
    act on printed as its escape (``\\x1b``): a tenant's title must not clear a terminal or
    write to its clipboard."""
    return _ACTED_ON.sub(_escaped, text)


def shown(text: str) -> str:
    """:func:`visible` text as markup that prints it as sent: brackets are text."""
    return escape(visible(text))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def styled(status: str) -> str:
    return f"[{STYLES.get(status, 'default')}]{shown(status)}[/]"


def failed_and_cancelled(counts: Json) -> tuple[int, int]:
    """The failed clips and the cancelled ones, apart: the API's ``failed`` counts both, and
    its ``cancelled`` (absent from an API older than it: 0) the cancelled ones."""
    cancelled = int(counts.get("cancelled") or 0)
    return counts["failed"] - cancelled, cancelled


def totals(counts: Json) -> str:
    failed, cancelled = failed_and_cancelled(counts)
    text = f"{counts['completed']} completed / {counts['pending']} pending / {failed} failed"
    if cancelled:
        text += f" / {cancelled} cancelled"
    return f"{text} of {counts['total_clips']}"


def print_json(value: Any) -> None:
    """For scripts: plain JSON on stdout, whatever the terminal."""
    print(json.dumps(value, indent=2), flush=True)


def project_summary(console: Console, project: Json) -> None:
    console.print(
        f"[bold]{shown(project.get('title') or 'Untitled')}[/]  {shown(project['project_id'])}  "
        f"{styled(project['status'])}  {totals(project)}"
    )


def clips_changed(console: Console, answer: Json, done: str, *, nothing: str) -> None:
    """What a retry or a cancel did, from its answer's ``clips_changed`` (0: nothing to do)."""
    changed = answer.get("clips_changed")
    if changed is None:  # an older server: its answer does not say
        return
    said = f"{changed} clip{'' if changed == 1 else 's'} {done}." if changed else nothing
    console.print(said, highlight=False)


def cancel_billed(console: Console, answer: Json) -> None:
    """After a cancel that changed something: how many of the clips it cancelled Runware may
    bill all the same, as far as the server knows (``clips_may_be_billed``: 0 says nothing, as
    a clip whose submit was in flight may be billed uncounted); from an older
    server, the cancelled clips that had been submitted (``submitted_at``; an answer without
    ``results`` cannot tell, so then always)."""
    if answer.get("clips_changed") == 0:
        return
    may_be_billed = answer.get("clips_may_be_billed")
    if may_be_billed is not None:
        if may_be_billed:
            console.print(
                f"{may_be_billed} of the cancelled clips may still be billed: Runware had"
                " them, or may have (every clip, in the first seconds after creating).",
                highlight=False,
            )
        return
    results = answer.get("results")
    if results is None:
        console.print("A clip Runware had started is billed all the same.", highlight=False)
        return
    started = sum(
        1 for clip in results if clip.get("status") == "cancelled" and clip.get("submitted_at")
    )
    if started:
        console.print(
            f"{started} of the cancelled clips had started at Runware: billed all the same.",
            highlight=False,
        )


def cost_totals(cost: Json | None) -> str:
    """``$1.20``, ``$1.20 + 1 unpriced`` (a task that reported no cost), or "" before any."""
    if not cost or not (cost.get("known") or cost.get("unknown")):
        return ""
    parts = [money(cost["usd"])] if cost.get("known") else []
    if cost.get("unknown"):
        parts.append(f"{cost['unknown']} unpriced")
    return " + ".join(parts)


def project_details(
    console: Console, project: Json, api_url: str, *, scenes: Json | None = None
) -> None:
    """A project with a row per clip, and a dim row per earlier task of a retried scene (one
    whose video reelflow keeps, a ``stored_url``, says so); then, with its ``scenes``
    (``GET /v1/projects/{id}/scenes``), what each scene asked for.

    A finished clip shows reelflow's copy of its video when there is one (Runware's link
    expires), as a whole URL to copy: the table is wider than the screen rather than cut.
    """
    project_summary(console, project)
    if spent := cost_totals(project.get("cost")):
        console.print(f"cost {spent}", highlight=False)
    table = Table(
        *(Column(name, no_wrap=True) for name in ("scene", "status", "task", "video / error")),
        box=None,
        pad_edge=False,
    )
    for clip in project.get("results", []):
        scene = str(clip["scene_index"])
        table.add_row(
            scene, styled(clip["status"]), shown(clip["task_uuid"]), _outcome(clip, api_url)
        )
        for attempt in clip.get("attempts") or []:
            outcome = _outcome(attempt, api_url)
            if attempt.get("stored_url"):
                outcome += " [dim](kept by reelflow)[/]"
            table.add_row(
                "",
                f"[dim]earlier: {shown(attempt['status'])}[/]",
                shown(attempt["task_uuid"]),
                outcome,
            )
    _whole(console, table)
    if scenes is not None:
        scene_prompts(console, scenes)


def scene_prompts(console: Console, scenes: Json) -> None:
    """``scene 0 (4 s, 1280x720): <the prompt>``, a line per scene, under the project's model:
    the whole prompt as sent, on one line (a line break in it shows as ``\\n``)."""
    listed = scenes.get("scenes")
    if not isinstance(listed, list) or not listed:
        return
    model = _one_line(scenes.get("model", "?"))
    console.print(f"scenes (model {model}):", markup=False, highlight=False)
    for scene in listed:
        if isinstance(scene, dict):  # anything else from a broken server: not a scene
            console.print(_scene_line(scene), markup=False, highlight=False)


def _scene_line(scene: Json) -> str:
    """One scene as :func:`scene_prompts` shows it; a field the answer lacks shows as ``?``."""
    duration = scene.get("duration")
    seconds = f"{duration:g}" if isinstance(duration, int | float) else "?"
    size = f"{_one_line(scene.get('width', '?'))}x{_one_line(scene.get('height', '?'))}"
    index = _one_line(scene.get("scene_index", "?"))
    line = f"scene {index} ({seconds} s, {size}): {_one_line(scene.get('prompt', ''))}"
    if scene.get("negative_prompt"):
        line += f" (negative: {_one_line(scene['negative_prompt'])})"
    return line


def _one_line(text: object) -> str:
    """Server text as :func:`visible` shows it, on one line: a line break shows as ``\\n``."""
    return visible(str(text)).replace("\n", "\\n")


def _whole(console: Console, table: Table) -> None:
    """``table`` with no cell cut or wrapped: wider than the screen when it must be."""
    needed = Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum
    # Laid out at its own width: print(width=) would only ever narrow it to the console's.
    options = console.options.update_width(max(console.width, needed))
    for line in console.render_lines(table, options, pad=False):
        console.print(Segments([*_without_trailing_spaces(line), Segment.line()]), crop=False)


def _without_trailing_spaces(line: list[Segment]) -> list[Segment]:
    """A terminal wraps a line wider than itself: padding after its end would wrap too."""
    while line and not line[-1].text.rstrip():
        line = line[:-1]
    if line:
        last = line[-1]
        line = [*line[:-1], Segment(last.text.rstrip(), last.style)]
    return line


def _outcome(clip: Json, api_url: str) -> str:
    if video := video_link(clip, api_url):
        return shown(video)
    error = clip.get("error") or {}
    if not error:
        return ""
    said = f"{error.get('message', '')} ({error.get('code', '')})"
    return f"[red]{shown(said)}[/]"


_COLUMNS = ("project", "title", "status", "clips", "created")
#: a title gets at most this much, and is left out when it cannot get ``_TITLE_MIN``
_TITLE_MAX, _TITLE_MIN = 30, 8
_GAP = 2


def _width_of(widths: dict[str, int]) -> int:
    return sum(widths.values()) + _GAP * (len(widths) - 1)


def list_widths(rows: list[dict[str, str]], width: int) -> dict[str, int]:
    """Each column's width in a list ``width`` characters wide, in order; what does not fit
    gives way: the title shortens, the time of creation goes (then its date), then the
    title, then the clips. Never the id (what ``get`` and ``watch`` take) nor the status."""
    natural = {name: max(len(name), *(len(row[name]) for row in rows)) for name in _COLUMNS}
    title = min(natural.pop("title"), _TITLE_MAX)
    for created in (natural["created"], 10, 0):
        others = natural | {"created": created}
        others = {name: size for name, size in others.items() if size}
        room = width - _width_of(others) - _GAP
        if room >= min(title, _TITLE_MIN):
            shown = others | {"title": min(title, room)}
            return {name: shown[name] for name in _COLUMNS if name in shown}
    if _width_of(others) > width:
        del others["clips"]
    return others


def project_list(
    console: Console, page: Json, *, status: str | None = None, limit: int | None = None
) -> None:
    """The page's projects, a row each: fitted to a terminal's width (:func:`list_widths`); in a
    pipe or a log, whole lines (there is no screen to fit, and a script wants every title).
    The next page's command repeats the ``status`` filter (its cursor is only good with it)
    and the ``limit`` (None: the default page size, not repeated)."""
    items = page["items"]
    if not items:
        console.print("No projects.")
        return
    rows = [
        {
            "project": item["project_id"],
            "title": item.get("title") or "",
            "status": item["status"],
            "clips": clips_done(item),
            "created": utc_minute(item["created_at"]) if item.get("created_at") else "",
        }
        for item in items
    ]
    if console.is_terminal:
        widths = list_widths(rows, console.width)
        # Wider than the screen only when the id and the status alone are: whole, all the same.
        fits = _width_of(widths)
        console.print(_list_table(rows, widths), width=max(console.width, fits), crop=False)
    else:
        _whole(console, _list_table(rows, dict.fromkeys(_COLUMNS)))
    if page.get("next_cursor"):
        filtered = "" if status is None else f" --status {status}"
        sized = "" if limit is None else f" --limit {limit}"
        console.print(
            f"More: reelflow list{filtered}{sized} --cursor {page['next_cursor']}", style="dim"
        )


def _list_table(rows: list[dict[str, str]], widths: Mapping[str, int | None]) -> Table:
    """The rows in these columns, each of its width (None: as wide as its longest cell)."""
    table = Table(
        *(
            Column(name, no_wrap=True, overflow="ellipsis", min_width=width, max_width=width)
            for name, width in widths.items()
        ),
        box=None,
        pad_edge=False,
    )
    for row in rows:
        # A shortened creation time is its (UTC) date; a shortened title ends in an ellipsis.
        cells = {name: shown(text) for name, text in row.items()} | {
            "status": styled(row["status"]),
            "created": shown(row["created"][: widths.get("created")]),
        }
        table.add_row(*(cells[name] for name in widths))
    return table


def clips_done(counts: Json) -> str:
    """``2/4 done, 1 failed, 1 cancelled``: short enough for a table."""
    failed, cancelled = failed_and_cancelled(counts)
    text = f"{counts['completed']}/{counts['total_clips']} done"
    if failed:
        text += f", {failed} failed"
    if cancelled:
        text += f", {cancelled} cancelled"
    return text


class ClipBars:
    """One progress bar per clip, in scene order: a generating clip shows Runware's progress
    once the server has stored one (it pulses until then), a finished one is full (or
    marked failed)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=8)),
            BarColumn(bar_width=30),
            # Long error messages wrap rather than squeeze the scene names.
            TextColumn("{task.fields[status]}", table_column=Column(ratio=1, overflow="fold")),
            console=console,
        )
        self._tasks: dict[int, TaskID] = {}
        self._header_shown = False

    def __enter__(self) -> ClipBars:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def show(self, message: Json, state: ProjectState, changed: bool) -> None:
        if not changed:
            return
        if not self._header_shown:
            self._progress.console.print(
                f"[bold]{shown(state.title or 'Untitled')}[/]  {shown(state.project_id)}"
            )
            self._header_shown = True
        for scene in sorted(state.clips):
            self._draw(state.clips[scene])

    def connection(self, state: str) -> None:
        if state == "reconnecting":
            self._progress.console.print("[yellow]connection lost; reconnecting…[/]")

    def _draw(self, clip: ClipState) -> None:
        task = self._tasks.get(clip.scene_index)
        if task is None:
            task = self._progress.add_task(f"scene {clip.scene_index}", status="")
            self._tasks[clip.scene_index] = task
        if clip.status == "success":
            self._progress.update(task, total=1, completed=1, status="[green]done[/]")
        elif clip.status in ("failed", "cancelled"):
            text = f"[red]{clip.status}[/]" + (
                f" [red]{shown(clip.error)}[/]" if clip.error else ""
            )
            self._progress.update(task, total=1, completed=0, status=text)
        elif clip.status == "processing" and clip.progress is not None:
            self._progress.update(
                task, total=100, completed=clip.progress, status=f"[yellow]{clip.progress} %[/]"
            )
        elif clip.status == "processing":
            self._progress.update(task, total=None, status="[yellow]generating[/]")
        else:
            self._progress.update(task, total=1, completed=0, status="[dim]queued[/]")


class ClipLines:
    """The same as lines, for a log or a pipe: one line per change of a clip; a lost
    connection is said on ``notices`` (stderr), apart from the lines a script reads."""

    def __init__(self, console: Console, *, notices: Console | None = None) -> None:
        self._console = console
        self._notices = notices or Console(stderr=True, soft_wrap=True)
        self._last: dict[int, str] = {}

    def show(self, message: Json, state: ProjectState, changed: bool) -> None:
        for scene in sorted(state.clips):
            clip = state.clips[scene]
            error = f" {visible(clip.error)}" if clip.error else ""
            line = f"scene {scene}: {visible(clip.status)}{error}"
            if clip.status == "processing" and clip.progress is not None:
                line += f" {clip.progress} %"
            if self._last.get(scene) != line:
                self._last[scene] = line
                self._console.print(line, markup=False, highlight=False)

    def connection(self, state: str) -> None:
        if state == "reconnecting":
            self._notices.print("connection lost; reconnecting…", markup=False, highlight=False)


class JsonLines:
    """Every message as it arrived, one JSON document per line (``--json``)."""

    def show(self, message: Json, state: ProjectState, changed: bool) -> None:
        print(json.dumps(message), flush=True)

    def connection(self, state: str) -> None:
        pass


def money(usd: float | None) -> str:
    """Every dollar amount the CLI prints: cents always, up to four decimals when they are not
    zero (``$5.00``, ``$23.234``, ``$0.0013``, ``$1,234.50``; ``-`` for none). The admin
    tool's twin is ``reelflow_common.money.format_usd`` (the CLI does not import
    reelflow_common); a test holds them to the same answers."""
    if usd is None:
        return "-"
    whole, _, decimals = f"{usd:,.4f}".partition(".")
    return f"${whole}.{decimals[:2]}{decimals[2:].rstrip('0')}"


def usage(console: Console, report: Json) -> None:
    """A month's spend by day, unpriced clips said as such, and the limits it counts against."""
    month = report["month"]
    unpriced = month["unknown_cost_clips"]
    note = f" + {unpriced} clip(s) of unknown cost" if unpriced else ""
    console.print(
        f"[bold]{shown(month['period'])}[/]  {money(month['usd'])} over"
        f" {month['known_cost_clips']} priced clip(s){note}, {month['projects']} project(s)",
        highlight=False,
    )
    table = Table("UTC day", "spent", "priced", "unpriced", "projects", box=None, pad_edge=False)
    for day in report["days"]:
        table.add_row(
            day["period"],
            money(day["usd"]),
            str(day["known_cost_clips"]),
            str(day["unknown_cost_clips"]),
            str(day["projects"]),
        )
    if report["days"]:
        console.print(table)
    limits = {name: value for name, value in report["limits"].items() if value is not None}
    if not limits:
        console.print("no limits set", style="dim")
        return
    for name, value in limits.items():
        said = ",".join(value) if isinstance(value, list) else str(value)
        console.print(f"limit {name}: {visible(said)}", markup=False, highlight=False)
    if report.get("clips_in_flight") is not None:
        console.print(f"clips in flight: {report['clips_in_flight']}", highlight=False)
    for period, usd in sorted(report.get("committed_usd", {}).items()):
        console.print(f"committed {period}: {money(usd)}", highlight=False)
