"""What ``make run`` keeps in its run directory for people and tools: the video storage its
services share, the secrets it makes once and keeps, and the settings file ``reelflow-admin
--env-file`` reads."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO, get_args

from pydantic import SecretStr

from reelflow_common.admin.cli import AdminSettings
from reelflow_common.settings import LogSettings
from reelflow_devtools.processes import StartError

#: in the run directory while a stack runs: its settings, for ``reelflow-admin --env-file``
ENV_FILE = "env"
#: in the run directory: the development stack's key of its video URLs, kept across runs
VIDEO_URL_SECRET_FILE = "video-url-secret"  # noqa: S105 (a file name, not a secret)


def video_storage(run_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``make run`` keeps every finished video in ``<run dir>/videos``, served by the api.

    Unless the environment chooses otherwise; the URL secret is the run directory's
    (:func:`kept_secret`), so a link handed out before a restart stays valid for its day.
    """
    return {
        "REELFLOW_STORAGE_BACKEND": env.get("REELFLOW_STORAGE_BACKEND", "local"),
        "REELFLOW_STORAGE_DIR": env.get("REELFLOW_STORAGE_DIR", str(run_dir.resolve() / "videos")),
        "REELFLOW_VIDEO_URL_SECRET": env.get("REELFLOW_VIDEO_URL_SECRET")
        or kept_secret(run_dir / VIDEO_URL_SECRET_FILE),
    }


def kept_secret(path: Path) -> str:
    """The secret in ``path``, made there (for its owner only) by the first run that needs it."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(32)
    with _owners_only(path) as out:
        out.write(f"{made}\n")
    return made


def _owners_only(path: Path) -> TextIO:
    """``path`` opened for writing, emptied, readable by its owner only; never through a link
    (one planted there would have us write our secrets where it points)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an earlier run keeps its own mode otherwise
    return os.fdopen(descriptor, "w")


def admin_environment(services: Mapping[str, str], caller: Mapping[str, str]) -> dict[str, str]:
    """The settings ``reelflow-admin`` reads, as this stack's services have them.

    ``services``: what the launcher gives every service on top of ``caller``, the
    environment they inherit. Its log settings stay the admin's own, and a secret the
    caller gave (a broker's password, a Runware key) stays in the caller's environment:
    ``reelflow-admin`` reads that too, and the file never holds it.
    """
    given = {**caller, **services}
    shown: dict[str, str] = {}
    for name, field in AdminSettings.model_fields.items():
        variable = f"REELFLOW_{name.upper()}"
        if name in LogSettings.model_fields or variable not in given:
            continue
        secret = SecretStr in (field.annotation, *get_args(field.annotation))
        if secret and caller.get(variable) == given[variable]:
            continue
        shown[variable] = given[variable]
    return shown


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """``env`` as ``NAME="value"`` lines, as ``--env-file`` reads them (python-dotenv, through
    pydantic-settings), for its owner only: it may hold the development stack's own secrets."""
    lines = [f"{name}={_dotenv_quoted(name, value)}\n" for name, value in sorted(env.items())]
    with _owners_only(path) as out:
        out.write(
            "# The settings of the stack make run is running, for reelflow-admin --env-file.\n"
        )
        out.writelines(lines)
    return path


def _dotenv_quoted(name: str, value: str) -> str:
    """``value`` in double quotes, its backslashes and quotes escaped. python-dotenv expands
    ``${...}`` even in quotes, and a line break would end the line: neither can be written."""
    if "${" in value or "\n" in value or "\r" in value:
        raise StartError(
            f"{name} cannot be written to {ENV_FILE}: {value!r} has '${{' or a line break"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
