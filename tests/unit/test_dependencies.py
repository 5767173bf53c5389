"""Every package of the workspace declares what its own source imports.

One environment holds every package, so an undeclared import works here and
fails only in an image built for one service. This reads each package's imports
(``ast``) and checks them against its ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests import ROOT

PACKAGES = sorted(path.parent for path in ROOT.glob("*/*/pyproject.toml"))


def normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared(pyproject: Path) -> set[str]:
    """The distributions a package depends on, by normalized name."""
    dependencies = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    names = (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec) for spec in dependencies)
    return {normalized(name[0]) for name in names if name}


def imported(source: Path) -> Iterator[tuple[str, int, str]]:
    """(top-level module, line, file) of each absolute import under ``source``.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run, and the stub
    packages they name are the workspace's dev dependencies (for mypy).
    """
    for path in sorted(source.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        type_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
            for statement in block.body
            for node in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                yield module.partition(".")[0], node.lineno, str(path.relative_to(ROOT))


def providers() -> dict[str, list[str]]:
    """Import name -> the distributions that provide it, the workspace's own included.

    The workspace's packages are installed editable, which ``packages_distributions``
    does not see through.
    """
    found = {name: list(dists) for name, dists in packages_distributions().items()}
    for package in PACKAGES:
        distribution = tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"]
        for module in (package / "src").iterdir():
            if module.is_dir():
                found[module.name] = [distribution]
    return found


def test_the_workspace_packages_are_found() -> None:
    names = {package.name for package in PACKAGES}
    assert {"common", "api", "submitter", "poller", "notifier", "cli", "devtools"} <= names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_import_of_a_package_is_a_declared_dependency(package: Path) -> None:
    provided_by = providers()
    ours = {path.name for path in (package / "src").iterdir() if path.is_dir()}
    allowed = declared(package / "pyproject.toml")
    undeclared = sorted(
        f"{where}:{line} imports {module} ({' or '.join(provided_by.get(module, ['?']))})"
        for module, line, where in imported(package / "src")
        if module not in sys.stdlib_module_names
        and module not in ours
        and not allowed & {normalized(d) for d in provided_by.get(module, [])}
    )
    assert not undeclared, "undeclared imports:\n" + "\n".join(undeclared)
