"""What a broker restart looks like to one client, without disturbing anyone else."""

from __future__ import annotations

import asyncio
import shutil

import pytest


async def close_connection_from_the_broker(name: str) -> None:
    """Close the one connection named ``name`` from the broker's side (needs rabbitmqctl)."""
    listing = await _rabbitmqctl(
        "list_connections", "--no-table-headers", "pid", "client_properties"
    )
    marker = f'{{"connection_name","{name}"}}'
    pids = [line.split("\t")[0] for line in listing.splitlines() if marker in line]
    assert len(pids) == 1, f"connection {name!r} not found"
    await _rabbitmqctl("close_connection", pids[0], "test: simulated broker restart")


async def _rabbitmqctl(*args: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl beside the broker")
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"rabbitmqctl {args[0]} failed"
    return out.decode()
