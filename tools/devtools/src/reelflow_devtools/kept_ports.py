"""The ports of ``make run --free-ports``, kept in its run directory from one run to the next.

The first run picks them free (:func:`free_port`) and writes them to ``ports.json``
in the run directory; each later run takes the same ones back (:func:`hold_port`)
while they are free, so the URLs a person bookmarked keep working. A port that
something else listens on now, or that another stack of this machine was handed,
moves to a free one, which is kept from then on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reelflow_devtools.ports import free_port, hold_port

#: in the run directory: the ports its ``--free-ports`` runs listen on, by service
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class Moved:
    """A kept port that was taken, and the one its service listens on instead."""

    service: str
    was: int
    now: int


def kept_ports(run_dir: Path, services: Sequence[str]) -> tuple[dict[str, int], list[Moved]]:
    """A port for each of ``services``, reserved for this process: the one kept in
    ``run_dir`` while it is free, else a free one (kept from now on); and which moved."""
    path = run_dir / PORTS_FILE
    kept = _read(path)
    ports: dict[str, int] = {}
    moved: list[Moved] = []
    for service in services:
        was = kept.get(service)
        if was is not None and hold_port(was):
            ports[service] = was
            continue
        ports[service] = free_port()
        if was is not None:
            moved.append(Moved(service, was, ports[service]))
    if ports != kept:
        _write(path, ports)
    return ports, moved


def _read(path: Path) -> dict[str, int]:
    """The ports kept in ``path``; none when it is missing or not what we write."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(service): port
        for service, port in found.items()
        if isinstance(port, int) and 0 < port < 65536
    }


def _write(path: Path, ports: dict[str, int]) -> None:
    """``ports`` to ``path``, whole or not at all (a run killed while writing leaves the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_name(f"{path.name}.new")
    written.write_text(json.dumps(ports, indent=2) + "\n")
    os.replace(written, path)
