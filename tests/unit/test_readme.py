"""The README promises what the code does."""

from __future__ import annotations

from pathlib import Path

from reelflow_devtools.config_table import BEGIN, END, render, rows

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_matches_the_settings_classes() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert table == render(), "run: .venv/bin/python -m reelflow_devtools.config_table --write"


def test_every_setting_is_described() -> None:
    undescribed = [variables for variables, _, _, meaning in rows() if not meaning]
    assert undescribed == []


def test_readme_shows_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
