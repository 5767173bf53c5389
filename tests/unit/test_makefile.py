"""The Makefile as a newcomer meets it: ``make run`` in a copy of it, with stand-ins for
Python, uv and the launcher, so nothing is installed or started."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests import ROOT

#: what the first ``make run`` says before its install
NOTICE = "reelflow: first run: installing"
#: what the Makefile's install depends on (its ``.synced`` stamp's prerequisites)
_INSTALL_INPUTS = (
    "uv.lock",
    "pyproject.toml",
    "libs/common/pyproject.toml",
    "services/api/pyproject.toml",
    "tools/devtools/pyproject.toml",
)


def _checkout(path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", path / "Makefile")
    for name in _INSTALL_INPUTS:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("")
    return path


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _make_run(checkout: Path, python: str) -> subprocess.CompletedProcess[str]:
    return _make(checkout, "run", f"PYTHON={python}")


def _make(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None
    return subprocess.run(
        [make, "--no-print-directory", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_first_make_run_says_it_installs_and_for_how_long_before_it_starts(
    tmp_path: Path,
) -> None:
    checkout = _checkout(tmp_path)
    python = tmp_path / "bin" / "python"
    _script(python, "exit 3")  # the install stops at its first step

    ran = _make_run(checkout, str(python))

    lines = ran.stdout.splitlines()
    assert ran.returncode != 0
    assert len(lines) == 1, ran.stdout  # the install's commands are not echoed
    assert lines[0].startswith(NOTICE)
    assert "about 2 minutes" in lines[0]
    assert ".tools/bin/uv] Error 3" in ran.stderr  # make names the step that failed


def test_a_make_run_with_everything_installed_prints_only_what_the_launcher_says(
    tmp_path: Path,
) -> None:
    checkout = _checkout(tmp_path)
    _script(checkout / ".tools" / "bin" / "uv", "exit 3")
    _script(checkout / ".venv" / "bin" / "reelflow-dev", "echo launcher")
    synced = checkout / ".venv" / ".synced"
    synced.write_text("")
    later = max((checkout / name).stat().st_mtime for name in _INSTALL_INPUTS) + 10
    for path in (checkout / ".tools" / "bin" / "uv", synced):
        os.utime(path, (later, later))

    ran = _make_run(checkout, "python3.11")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["launcher"]


def test_the_install_lists_no_packages_but_says_how_many_in_one_line(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    site = checkout / ".venv" / "lib" / "python3.11" / "site-packages"
    installs = " && ".join(f"mkdir -p {site}/pkg{n}-1.0.dist-info" for n in range(3))
    # uv as it installs: a line per package, unless asked to be quiet
    _script(
        checkout / ".tools" / "bin" / "uv",
        f'case " $* " in *" --quiet "*) ;; *) echo " + pkg0==1.0";; esac; {installs}',
    )
    _script(checkout / ".venv" / "bin" / "reelflow-dev", "echo launcher")
    later = max((checkout / name).stat().st_mtime for name in _INSTALL_INPUTS) + 10
    os.utime(checkout / ".tools" / "bin" / "uv", (later, later))

    ran = _make_run(checkout, "python3.11")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"{NOTICE} uv and the locked dependencies into .tools/ and .venv/ (about 2 minutes,"
        " this once)",
        "reelflow: 3 packages installed in .venv, as uv.lock pins them",
        "launcher",
    ]


def test_make_clean_deletes_the_checkouts_queues_first_and_keeps_everything_when_refused(
    tmp_path: Path,
) -> None:
    checkout = _checkout(tmp_path)
    (checkout / ".run").mkdir()
    launcher = checkout / ".venv" / "bin" / "reelflow-dev"
    _script(launcher, 'echo "asked: $*"; exit 1')  # refused: a stack of it runs

    refused = _make(checkout, "clean")

    assert refused.returncode != 0
    assert "asked: --delete-queues" in refused.stdout
    assert (checkout / ".run").is_dir()
    assert launcher.exists()

    _script(launcher, 'echo "asked: $*"')
    cleaned = _make(checkout, "clean")

    assert cleaned.returncode == 0, cleaned.stderr
    assert "asked: --delete-queues" in cleaned.stdout
    assert not (checkout / ".run").exists()
    assert not (checkout / ".venv").exists()


def test_make_clean_says_what_it_removed_in_one_line_without_echoing_its_commands(
    tmp_path: Path,
) -> None:
    checkout = _checkout(tmp_path)
    (checkout / ".run").mkdir()
    (checkout / ".tools").mkdir()
    _script(checkout / ".venv" / "bin" / "reelflow-dev", "echo queues deleted")

    cleaned = _make(checkout, "clean")
    again = _make(checkout, "clean")

    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.splitlines() == ["queues deleted", "reelflow: removed .run .tools .venv"]
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "reelflow: removed nothing (there was no .venv, .tools or .run)"
    ]
