"""Nothing in the repository points outside it: no build machine's paths, no sibling checkouts.

Every tracked text file is read; a Markdown link must resolve to a file inside
the repository, and no file may name a path of the machine it was written on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests import ROOT

# Spelled in pieces so that this file does not match itself.
_OUTSIDE = re.compile(
    "|".join(
        [
            re.escape("/" + "work/"),  # the build machine's checkout root
            re.escape(".." + "/shared"),  # a sibling directory of the checkout
            re.escape("shared/" + "API.md"),
            re.escape("runware-" + "api.md"),  # the notes docs/RUNWARE.md replaces
            re.escape("/" + "home/"),
        ]
    )
)
#: ``[text](target)`` in Markdown, target without its ``#anchor``
_MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    files = []
    for name in listed.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or name == "uv.lock":
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binaries
            continue
        files.append(path)
    return files


@pytest.fixture(scope="module")
def tracked() -> list[Path]:
    files = _tracked_text_files()
    assert len(files) > 50, "git ls-files found too little: not run from the repository?"
    return files


def test_no_tracked_file_names_a_path_outside_the_repository(tracked: list[Path]) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert found == []


def test_every_relative_markdown_link_resolves_inside_the_repository(
    tracked: list[Path],
) -> None:
    broken = []
    for path in tracked:
        if path.suffix != ".md":
            continue
        for target in _MD_LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_checks_catch_what_they_look_for() -> None:
    assert _OUTSIDE.search("see " + "../" + "shared/" + "API.md")
    assert _OUTSIDE.search("/" + "work/shared/x")
    assert _MD_LINK.findall("[a](../../x.md#top) [b](https://e.org)") == [
        "../../x.md",
        "https://e.org",
    ]


def test_every_section_cited_from_runware_md_exists(tracked: list[Path]) -> None:
    runware = (ROOT / "docs" / "RUNWARE.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", runware, flags=re.M))
    cited = {
        (str(path.relative_to(ROOT)), section)
        for path in tracked
        for line in path.read_text(encoding="utf-8").splitlines()
        if "RUNWARE.md §" in line
        for section in re.findall(r"§(\d+(?:\.\d+)?)", line)
    }
    assert len(cited) > 5
    assert [(where, section) for where, section in sorted(cited) if section not in headings] == []
