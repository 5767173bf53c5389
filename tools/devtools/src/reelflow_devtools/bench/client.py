"""Talking to reelflow's public API the way a frontend does, with bounded waits.

Over aiohttp rather than httpx: the benchmark's client shares the 2 cores with the
stack it measures, so what a request costs the client is taken from the server.
At 20 concurrent ``GET /v1/projects/{id}`` (``--scenario api``, the two clients
alternated, two runs each, 2026-12-03), an httpx ``AsyncClient`` spent 2.8 and
3.0 ms of CPU per GET (its pool is known to be slow under concurrency:
encode/httpx#3215) and capped the runs at 329 and 285 GETs/s with a p95 of 196
and 199 ms; aiohttp spent 0.25 and 0.34 ms, and the same stack answered 834 and
491 GETs/s with a p95 of 26 and 50 ms. The raw-socket burst of
:mod:`reelflow_devtools.bench.overload` avoids a pool for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from reelflow_devtools.waiting import poll_until_async

POLL_INTERVAL_S = 0.25
#: an idle connection is dropped after this, well before the api closes it (after its
#: ``http_keepalive_timeout_s``, 5 s): a request sent on a connection the server closes at
#: that moment fails (seen in a run whose GETs came ~5 s after its POSTs)
KEEPALIVE_EXPIRY_S = 2.0
#: how many times a request answered 503 is sent, in all
ATTEMPTS = 5
#: what a request that got no answer raises (refused, reset, timed out)
CONNECTION_ERRORS = (aiohttp.ClientError, TimeoutError)


class BenchError(RuntimeError):
    """A phase could not run to the end (a deadline passed, a request failed)."""


class ApiAnswerError(RuntimeError):
    """The API answered a read with a status that is not a success.

    Not a :class:`BenchError`: a phase that waits out a deadline does not mistake
    it for one, and the run stops on it with its traceback.
    """


#: what a read through :func:`get_json` raises when it got no usable answer
REQUEST_ERRORS = (*CONNECTION_ERRORS, ApiAnswerError)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scene(prompt: str, simulated_latency_s: float) -> dict[str, Any]:
    """One scene whose clip the simulator finishes after a fixed (simulated) time."""
    return {"prompt": f"{prompt} [sim:latency={simulated_latency_s:g}]", "duration": 4}


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ApiClient:
    """reelflow's REST API for one tenant's key, at most ``connections`` requests at a time."""

    def __init__(self, base_url: str, key: str, *, connections: int = 32) -> None:
        self._session = aiohttp.ClientSession(
            base_url=base_url,
            headers=auth(key),
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_EXPIRY_S),
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request and its whole answer; ``CONNECTION_ERRORS`` when none came."""
        async with self._session.request(
            method, url, json=json, params=params, headers=headers, allow_redirects=False
        ) as response:
            return Answer(response.status, response.headers, await response.read())

    async def get(self, url: str) -> Answer:
        return await self.request("GET", url)

    async def post(self, url: str, *, json: Any) -> Answer:
        return await self.request("POST", url, json=json)


def api_client(base_url: str, key: str, *, connections: int = 32) -> ApiClient:
    """A client for ``key``'s tenant; use it in ``async with``, which closes it."""
    return ApiClient(base_url, key, connections=connections)


async def create_project(api: ApiClient, body: dict[str, Any]) -> str:
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


async def get_json(api: ApiClient, url: str, **params: Any) -> Any:
    """GET as a well-behaved client does (see :func:`request`); the body of a 2xx answer."""
    answer = await request(api, "GET", url, params=params or None)
    if not answer.is_success:
        raise ApiAnswerError(f"GET {url} answered {answer.status_code}: {answer.text}")
    return answer.json()


async def request(api: ApiClient, method: str, url: str, **kwargs: Any) -> Answer:
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


async def list_projects(api: ApiClient, *, status: str | None = None) -> list[Any]:
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


async def wait_all_terminal(api: ApiClient, *, deadline_s: float) -> float:
    """Poll the tenant's list until no project is generating; the wall time it was seen."""

    async def none_generating() -> float | None:
        return None if await list_projects(api, status="generating") else time.time()

    return await poll_until_async(
        none_generating,
        what="no project to be generating",
        deadline_s=deadline_s,
        pause_s=POLL_INTERVAL_S,
        error=BenchError,
    )


async def get_projects(api: ApiClient, ids: list[str], concurrency: int) -> list[Any]:
    """GET each project (with ``results``), at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(project_id: str) -> Any:
        async with gate:
            return await get_json(api, f"/v1/projects/{project_id}")

    return list(await asyncio.gather(*(one(project_id) for project_id in ids)))
