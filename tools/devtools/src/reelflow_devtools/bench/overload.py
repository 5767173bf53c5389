"""A burst of B concurrent ``POST /v1/projects``: each answer a 202 or an immediate 503.

The API admits ``max_in_flight`` requests and answers the rest ``503`` with
``Retry-After`` at once. The burst comes from many clients, each with its own key and
fewer requests than one key may have in progress (``max_in_flight_per_key``, past which
a key's own requests are ``429``): the API's overload, not one client's. Each key is
looked up once before the burst, by one ``GET /v1/projects?limit=1`` of its own, one
after another: the burst then measures overload, not the first lookups of 50 keys the
API has not seen (it looks up ``auth_key_lookups_at_once`` such keys at once and
refuses the next with a 503, as it would a flood of wrong keys; a key it remembers is
never refused so, even once due to be read again). This phase
measures how soon every answer arrives, and
how ``/healthz`` answers meanwhile. Requests go over raw sockets, one connection
each (``Connection: close``): at this concurrency an HTTP client's connection
pool in the benchmark's own process is the bottleneck, and would measure itself.
Every accepted project's clip goes on through the pipeline (ground truth).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reelflow_devtools.bench.client import scene
from reelflow_devtools.bench.launcher import BenchStack
from reelflow_devtools.bench.stats import summary_ms


@dataclass(frozen=True)
class OverloadPlan:
    burst: int = 1000
    #: simulated seconds of the one clip of every accepted project
    latency_s: float = 50
    #: ``GET /healthz`` sent one after another while the burst is answered
    health_probes: int = 20
    #: clients (tenants, each with a key) the burst comes from, in turn: 20 requests each
    clients: int = 50


@dataclass(frozen=True)
class _Answer:
    status: int | str  # the HTTP status, or the name of the socket error
    seconds: float
    problem_json: bool = False
    retry_after: bool = False


async def _exchange(host: str, port: int, request: bytes) -> _Answer:
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        raw = await reader.read()  # the server closes: Connection: close
        writer.close()
    except OSError as exc:
        return _Answer(type(exc).__name__, time.perf_counter() - began)
    elapsed = time.perf_counter() - began
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    try:
        status: int | str = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = "unreadable"
    return _Answer(
        status,
        elapsed,
        problem_json=b"content-type: application/problem+json" in head,
        retry_after=b"\r\nretry-after:" in head,
    )


async def _look_up(host: str, port: int, keys: list[str]) -> None:
    """Have the API look each key up (and remember it), one request at a time."""
    for key in keys:
        answer = await _exchange(
            host,
            port,
            (
                "GET /v1/projects?limit=1 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                f"Authorization: Bearer {key}\r\n\r\n"
            ).encode(),
        )
        if answer.status != 200:
            raise RuntimeError(f"overload: a key's first GET answered {answer.status}, not 200")


async def run_overload(stack: BenchStack, plan: OverloadPlan) -> tuple[list[str], dict[str, Any]]:
    """Send the burst and the health probes at once; the burst's keys and the figures."""
    keys = [
        await stack.issue_key(f"bench-overload-{i}") for i in range(min(plan.clients, plan.burst))
    ]
    url = urlsplit(stack.api_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    await _look_up(host, port, keys)
    body = json.dumps({"title": "overload", "scenes": [scene("overload", plan.latency_s)]})
    posts = [
        (
            "POST /v1/projects HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        ).encode()
        for key in keys
    ]
    healthz = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

    async def probes() -> list[_Answer]:
        return [await _exchange(host, port, healthz) for _ in range(plan.health_probes)]

    began = time.perf_counter()
    burst, health = await asyncio.gather(
        asyncio.gather(*(_exchange(host, port, posts[i % len(posts)]) for i in range(plan.burst))),
        probes(),
    )
    wall_s = time.perf_counter() - began
    refused = [answer for answer in burst if answer.status == 503]
    return keys, {
        "burst": plan.burst,
        "wall_s": round(wall_s, 2),
        "statuses": {str(status): n for status, n in Counter(a.status for a in burst).items()},
        "unexpected": sum(answer.status not in (202, 503) for answer in burst),
        "refused_without_problem_or_retry_after": sum(
            not (answer.problem_json and answer.retry_after) for answer in refused
        ),
        "accepted": summary_ms([a.seconds for a in burst if a.status == 202]),
        "refused": summary_ms([a.seconds for a in refused]),
        "all": summary_ms([a.seconds for a in burst]),
        "healthz": summary_ms([a.seconds for a in health if a.status == 200]),
        "healthz_failed": sum(answer.status != 200 for answer in health),
    }
