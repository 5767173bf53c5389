"""Talking to reelflow's public API the way a frontend does, with bounded waits."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import httpx

POLL_INTERVAL_S = 0.25
#: an idle connection is dropped after this, well before the api closes it (after its
#: ``http_keepalive_timeout_s``, 5 s): a request sent on a connection the server closes at
#: that moment fails (``httpx.ReadError``; seen in a run whose GETs came ~5 s after its POSTs)
KEEPALIVE_EXPIRY_S = 2.0
#: how many times a request answered 503 is sent, in all
ATTEMPTS = 5


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
        limits=httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        ),
    )


async def create_project(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """POST a project as a well-behaved client does (see :func:`request`); its id.

    A retry carries the same ``Idempotency-Key``, so it never creates a second
    project. Any answer but 202 fails the phase.
    """
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    answer = await request(api, "POST", "/v1/projects", json=body, headers=headers)
    if answer.status_code != 202:
        raise BenchError(f"POST /v1/projects answered {answer.status_code}: {answer.text}")
    project_id: str = answer.json()["project_id"]
    return project_id


async def get_json(api: httpx.AsyncClient, url: str, **params: Any) -> Any:
    """GET as a well-behaved client does (see :func:`request`); the body, or HTTPStatusError."""
    answer = await request(api, "GET", url, params=params or None)
    answer.raise_for_status()
    return answer.json()


async def request(api: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; a 503 (overloaded, or a backing service slow to answer) is sent again.

    After its ``Retry-After``, up to :data:`ATTEMPTS` in all, each retry printed,
    as the API asks every client to do. The last answer is returned.
    """
    answer = await api.request(method, url, **kwargs)
    for _ in range(ATTEMPTS - 1):
        if answer.status_code != 503:
            break
        retry_after_s = float(answer.headers.get("Retry-After", "1"))
        print(f"bench: {method} {url} answered 503, again in {retry_after_s:g} s", file=sys.stderr)
        await asyncio.sleep(retry_after_s)  # as Retry-After asks
        answer = await api.request(method, url, **kwargs)
    return answer


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
        page = await get_json(api, "/v1/projects", **params)
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
            return await get_json(api, f"/v1/projects/{project_id}")

    return list(await asyncio.gather(*(one(project_id) for project_id in ids)))
