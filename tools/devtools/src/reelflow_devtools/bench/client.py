"""Talking to reelflow's public API the way a frontend does, with bounded waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

POLL_INTERVAL_S = 0.25


class BenchError(RuntimeError):
    """A phase could not run to the end (a deadline passed, a request failed)."""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scene(prompt: str, simulated_latency_s: float) -> dict[str, Any]:
    """One scene whose clip the simulator finishes after a fixed (simulated) time."""
    return {"prompt": f"{prompt} [sim:latency={simulated_latency_s:g}]", "duration": 4}


def api_client(base_url: str, key: str, *, connections: int = 32) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers=auth(key),
        timeout=30,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def list_projects(api: httpx.AsyncClient, *, status: str | None = None) -> list[Any]:
    """Every project of the client's tenant (the list endpoint, page by page)."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        answer = await api.get("/v1/projects", params=params)
        answer.raise_for_status()
        page = answer.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def wait_all_terminal(api: httpx.AsyncClient, *, deadline_s: float) -> float:
    """Poll the tenant's list until no project is generating; the wall time it was seen."""
    stop_at = time.monotonic() + deadline_s
    while True:
        if not await list_projects(api, status="generating"):
            return time.time()
        if time.monotonic() > stop_at:
            raise BenchError(f"projects still generating after {deadline_s:.0f} s")
        await asyncio.sleep(POLL_INTERVAL_S)  # between list calls; the deadline bounds it


async def get_projects(api: httpx.AsyncClient, ids: list[str], concurrency: int) -> list[Any]:
    """GET each project (with ``results``), at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(project_id: str) -> Any:
        async with gate:
            answer = await api.get(f"/v1/projects/{project_id}")
            answer.raise_for_status()
            return answer.json()

    return list(await asyncio.gather(*(one(project_id) for project_id in ids)))
