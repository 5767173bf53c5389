"""The README promises what the code does, and every command it shows would run."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
import typing

import typer
import yaml

from reelflow_cli import errors as cli_errors
from reelflow_cli.app import app as cli_app
from reelflow_common.admin.cli import AdminSettings, build_parser
from reelflow_common.metrics import MessageOutcome, PublishResult, RunwareOutcome
from reelflow_devtools.config_table import BEGIN, END, render, rows
from reelflow_devtools.devrun import READY, WS_AUTH, running_summary
from reelflow_devtools.launcher import DEFAULT_PORTS, Stack, StackConfig
from reelflow_devtools.rundir import RUN_DIR
from reelflow_devtools.runfiles import ENV_FILE
from reelflow_devtools.startchecks import _run_dir_for
from reelflow_runware_sim.directives import parse_directives
from tests import ROOT

README = (ROOT / "README.md").read_text()
# The README's placeholders for values, as the programs would be given them.
PLACEHOLDERS = {"PROJECT_ID": "3f9c2a7d-51e0-4b88-9c1a-2d3e4f5a6b7c", "DIR": "videos"}


def code_blocks(language: str = "sh") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands() -> list[list[str]]:
    """Every one-line shell command of the README's sh blocks, and each ``$(...)`` in one.

    Continuation lines are joined; lines inside a multi-line quoted argument (a
    JSON body) do not parse on their own and are left out.
    """
    found = []
    for block in code_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            if words:
                found.append(words)
                found += [shlex.split(inner) for inner in re.findall(r"\$\(([^()]*)\)", line)]
    return found


def test_configuration_table_matches_the_settings_classes() -> None:
    table = README[README.index(BEGIN) : README.index(END) + len(END)]
    assert table == render(), "run: .venv/bin/python -m reelflow_devtools.config_table --write"


def test_the_table_has_every_setting_reelflow_admin_reads() -> None:
    # Its own waits (REELFLOW_ADMIN_MONGO_WAIT_S, ...) are set like any other setting.
    listed = {name for variables, *_ in rows() for name in re.findall(r"`(\w+)`", variables)}
    prefix = str(AdminSettings.model_config.get("env_prefix", ""))
    wanted = {f"{prefix}{name}".upper() for name in AdminSettings.model_fields}
    assert {"REELFLOW_ADMIN_MONGO_WAIT_S", "REELFLOW_ADMIN_AMQP_WAIT_S"} <= wanted
    assert wanted <= listed, wanted - listed


def test_the_admin_env_file_of_a_second_stack_is_where_the_launcher_puts_it() -> None:
    # The refusal's command names the run directory after the checkout (its prefix).
    assert f"`{_run_dir_for('reelflow-wt.') / ENV_FILE}`" in README


def test_every_setting_is_described() -> None:
    undescribed = [variables for variables, _, _, meaning in rows() if not meaning]
    assert undescribed == []


def test_the_quick_start_sets_up_with_exactly_make_run_and_make_test() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = re.search(r"```sh\n(.*?)```", quick_start, flags=re.S)
    assert first_block is not None
    lines = [line.split("#", 1)[0].strip() for line in first_block[1].splitlines()]
    assert lines == ["make run", "make test"]


def test_the_quick_starts_sample_output_ends_as_make_run_prints_it() -> None:
    """From "reelflow is running." on, line for line, as on the default ports."""
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (sample,) = [
        block for block in quick_start.split("```")[1::2] if "reelflow is running." in block
    ]
    stack = Stack(StackConfig(run_dir=RUN_DIR))
    stack.ports = dict(DEFAULT_PORTS)

    printed = running_summary(
        stack, dev_key="rf_…", admin=".venv/bin/reelflow-admin", env_file=RUN_DIR / ENV_FILE
    )

    shown = sample[sample.index("reelflow is running.") :].splitlines()
    assert shown == [*printed, READY]


def test_the_curl_walkthrough_pastes_as_it_is() -> None:
    """No ``<placeholder>`` to fill in: each variable its commands use, one before sets."""
    section = README.split("### With curl", 1)[1].split("\n## ", 1)[0]
    script = "\n".join(re.findall(r"```sh\n(.*?)```", section, flags=re.S))
    assigned: set[str] = set()
    used = []
    for line in script.splitlines():
        used += [(name, name in assigned) for name in re.findall(r"\$(\w+)", line)]
        assigned |= set(re.findall(r"^(\w+)=", line))

    assert re.findall(r"<\w+>", script) == []
    assert {"KEY", "PROJECT", "TICKET"} <= {name for name, _ in used}
    assert [name for name, was_set in used if not was_set] == []


def test_every_make_target_the_readme_uses_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    used = set(re.findall(r"`make ([\w-]+)`", README))
    used |= {words[1] for words in commands() if words[:1] == ["make"]}
    assert used
    assert used <= targets, sorted(used - targets)


def test_every_reelflow_admin_command_in_the_readme_parses() -> None:
    shown = []
    for words in commands():
        for command in (
            words,
            *[shlex.split(c) for c in re.findall(r"\$\(([^()]*)\)", shlex.join(words))],
        ):
            for start, word in enumerate(command):
                if word == "reelflow-admin" or (word == "admin" and "run" in command[:start]):
                    shown.append(command[start + 1 :])
                    break
    shown += [shlex.split(c)[1:] for c in re.findall(r"`(reelflow-admin [^`]*)`", README)]
    assert len(shown) >= 10
    parser = build_parser()
    for argv in shown:
        # Placeholders as the README writes them: NAME, ID, "$TENANT", [--label L], ...
        argv = [word for word in argv if not word.startswith("[") and not word.endswith("]")]
        parser.parse_args(argv)


def test_the_compose_commands_name_services_and_profiles_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    profiles = {p for service in compose["services"].values() for p in service.get("profiles", [])}
    compose_commands = [
        command
        for words in commands()
        for command in [
            words,
            *[shlex.split(c) for c in re.findall(r"\$\(([^()]*)\)", shlex.join(words))],
        ]
        if command[:2] == ["docker", "compose"] or "docker" in command[:3]
    ]
    assert compose_commands
    for command in compose_commands:
        for index, word in enumerate(command):
            if word == "--profile":
                assert command[index + 1] in profiles
        if "run" in command:
            service = next(
                word for word in command[command.index("run") + 1 :] if not word.startswith("-")
            )
            assert service in compose["services"]


def test_every_path_and_link_in_the_readme_is_inside_the_repository_and_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README)
    paths = set(re.findall(r"`((?:deploy|docs|tools|tests)/[\w./-]+)`", README))
    paths |= {  # what kubectl applies
        words[index + 1]
        for words in commands()
        for index, word in enumerate(words[:-1])
        if words[0] == "kubectl" and word in ("-k", "-f")
    }
    assert links
    assert paths
    for target in [*links, *paths]:
        assert not target.startswith(("/", "..")), target
        assert "://" not in target or target.startswith("http"), target
        if "://" not in target:
            resolved = (ROOT / target).resolve()
            assert resolved.is_relative_to(ROOT), target
            assert resolved.exists(), target


def test_every_reelflow_cli_command_in_the_readme_exists_and_parses() -> None:
    """What the README shows of ``reelflow``, in code blocks and in prose, is accepted."""
    group = typer.main.get_command(cli_app)
    assert isinstance(group, typer.core.TyperGroup)
    shown = [
        words[words.index(".venv/bin/reelflow") + 1 :]
        for words in commands()
        if ".venv/bin/reelflow" in words
    ]
    # The prose names the other commands (`get`, ..., `download PROJECT_ID DIR`).
    prose = README.split("`reelflow list`", 1)[1].split(" take ", 1)[0]
    named = re.findall(r"`([a-z]+)(?: [A-Z_ ]+)?`", prose)
    shown += [["list"], *[shlex.split(c) for c in re.findall(r"`([a-z]+ [A-Z_ ]+)`", prose)]]
    assert len(named) >= 5, prose
    assert sorted(set(named) - set(group.commands)) == []
    # ... and every command the CLI has is there, in the prose or in a code block.
    assert sorted(set(group.commands) - {argv[0] for argv in shown} - set(named)) == []
    for argv in shown:
        name, *args = [PLACEHOLDERS.get(word, word) for word in argv]
        assert name in group.commands, f"reelflow {name}: no such command"
        group.commands[name].make_context(name, args)  # a wrong option or argument raises


def test_every_program_the_readme_runs_from_the_venv_is_installed_by_the_workspace() -> None:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    modules = set()
    for words in commands():
        for index, word in enumerate(words):
            if word.startswith(".venv/bin/"):
                program = word.removeprefix(".venv/bin/")
                if program == "python":
                    assert words[index + 1] == "-m", words
                    modules.add(words[index + 2])
                else:
                    assert program in scripts, f"{program}: no console script of that name"
    modules |= set(re.findall(r"python -m ([\w.]+)", README))
    assert modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"


def test_the_readme_opens_websockets_the_preferred_way_and_token_only_as_the_fallback() -> None:
    """docs/API.md: a header or a ticket; ``?token=`` is for older clients, never the example."""
    banner = next(line for line in README.splitlines() if line.startswith("  WebSocket  "))
    websocket_urls = re.findall(r"ws://\S+", README)

    assert banner.endswith(f"({WS_AUTH})")
    assert websocket_urls
    assert [url for url in websocket_urls if "token=" in url] == []
    assert any("?ticket=" in url for url in websocket_urls)
    assert "`?token=<key>` in the URL is still accepted, for older" in README


def test_every_simulator_directive_the_readme_shows_is_accepted() -> None:
    shown = re.findall(r"\[sim:[^\]]*\]", README)
    assert "[sim:fail]" in shown
    for directive in shown:
        parse_directives(directive.replace("=N]", "=2]"))  # a DirectiveError fails the test


def test_every_metric_reelflow_defines_is_in_the_readmes_table() -> None:
    defined = set()
    for source in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        text = source.read_text()
        defined |= set(re.findall(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"(\w+)\"", text))
    start = README.index("### Metrics, dashboard and alerts")
    table = README[start : README.index("\n\n", README.index("| metric |", start))]
    named = set(re.findall(r"`(reelflow_\w+)", table))

    assert len(defined) > 20
    assert defined - named == set(), "add them to the README's metrics table"


def metric_row(metric: str) -> str:
    """The second cell of the metrics table's row for ``metric``."""
    (row,) = re.findall(rf"^\| `{metric}\{{[^\n]*$", README, flags=re.M)
    cells: list[str] = row.split(" | ")
    return cells[1]


def test_the_label_values_the_readme_names_are_the_ones_the_code_counts() -> None:
    # The Literal types are what consume() and the Publisher pass to the counters
    # (mypy holds them to it); each counter is incremented in that one module only.
    broker = "libs/common/src/reelflow_common/broker"
    for counter, module in {
        "MESSAGES_TOTAL": f"{broker}/consume.py",
        "PUBLISHED_TOTAL": f"{broker}/publisher.py",
        "RUNWARE_REQUESTS_TOTAL": "libs/common/src/reelflow_common/runware/client.py",
    }.items():
        users = [
            source.relative_to(ROOT).as_posix()
            for source in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
            if f"{counter}.labels(" in source.read_text()
        ]
        assert users == [module], counter
    for metric, values in {
        "reelflow_messages_total": typing.get_args(MessageOutcome),
        "reelflow_published_total": typing.get_args(PublishResult),
        "reelflow_runware_requests_total": typing.get_args(RunwareOutcome),
    }.items():
        named = set(re.findall(r"`([a-z_0-9]+)`", metric_row(metric)))
        assert named == set(values), metric


def test_the_readme_lists_every_exit_code_of_the_cli() -> None:
    start = README.index("exits with a code a script can test:")
    listed = README[start : README.index("`reelflow --help` lists them", start)]
    named = {int(code) for code in re.findall(r"(?:[:;,]\s)(\d+)\s", listed)}
    codes = {value for name, value in vars(cli_errors).items() if name.startswith("EXIT_")}
    assert named == codes
