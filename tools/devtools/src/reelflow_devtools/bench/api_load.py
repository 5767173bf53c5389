"""Latency of ``GET /v1/projects/{id}`` and ``POST /v1/projects`` under C concurrent clients.

Each client sends its next request as soon as the last one is answered (a closed
loop), so C bounds the requests in flight. Every POSTed clip goes on through the
pipeline, as it would in production, and is checked against the simulator later.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from reelflow_devtools.bench.client import CONNECTION_ERRORS, Answer, ApiClient, api_client, scene
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.stats import summary_ms


@dataclass(frozen=True)
class ApiPlan:
    concurrency: int = 20
    get_requests: int = 1000
    #: every POSTed clip goes through the pipeline before the ground truth: few enough
    post_requests: int = 200
    #: requests of each kind sent one at a time first: the latency with no queue in front
    serial_requests: int = 50
    #: simulated seconds of the one clip of every POSTed project
    latency_s: float = 50


Send = Callable[[ApiClient, int], Awaitable[Answer]]


async def _closed_loop(
    stack: BenchStack, api: ApiClient, send: Send, *, requests: int, concurrency: int
) -> tuple[dict[str, Any], list[Answer]]:
    numbers = iter(range(requests))
    durations: list[float] = []
    answers: list[Answer] = []
    errors: dict[str, int] = {}

    async def client() -> None:
        for number in numbers:  # one shared iterator: every number is sent once
            began = time.perf_counter()
            try:
                answer = await send(api, number)
            except CONNECTION_ERRORS as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            durations.append(time.perf_counter() - began)
            if answer.is_success:
                answers.append(answer)
            else:
                errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1

    cpu_before = stack.cpu_seconds() | {"bench": time.process_time()}
    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cpu_after = stack.cpu_seconds() | {"bench": time.process_time()}
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": errors,
        "requests_per_s": round(requests / elapsed, 1),
        **summary_ms(durations),
        # What a request cost each process, whatever else loads the machine (a POST's
        # clip moves on through the pipeline meanwhile: the workers' share is partly it).
        "cpu_ms_per_request": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / requests, 2)
            for name in cpu_before
            if name in cpu_after
        },
    }, answers


async def run_api_load(
    stack: BenchStack, plan: ApiPlan, *, get_key: str, get_ids: list[str]
) -> tuple[str, list[str], dict[str, Any]]:
    """GET load on existing projects, then POST load; the POST tenant's key and project ids."""
    ids = itertools.cycle(get_ids)
    async with api_client(stack.api_url, get_key, connections=plan.concurrency) as api:

        async def get(client: ApiClient, _number: int) -> Answer:
            return await client.get(f"/v1/projects/{next(ids)}")

        gets_c1, _ = await _closed_loop(
            stack, api, get, requests=plan.serial_requests, concurrency=1
        )
        gets, _ = await _closed_loop(
            stack, api, get, requests=plan.get_requests, concurrency=plan.concurrency
        )

    post_key = await stack.issue_key("bench-api")
    async with api_client(stack.api_url, post_key, connections=plan.concurrency) as api:

        async def post(client: ApiClient, number: int) -> Answer:
            body = {"title": f"api {number}", "scenes": [scene(f"api {number}", plan.latency_s)]}
            return await client.post("/v1/projects", json=body)

        posts_c1, first = await _closed_loop(
            stack, api, post, requests=plan.serial_requests, concurrency=1
        )
        posts, answers = await _closed_loop(
            stack, api, post, requests=plan.post_requests, concurrency=plan.concurrency
        )
    project_ids = [answer.json()["project_id"] for answer in first + answers]
    return (
        post_key,
        project_ids,
        {
            "get_project": gets,
            "create_project": posts,
            "get_project_serial": gets_c1,
            "create_project_serial": posts_c1,
        },
    )
