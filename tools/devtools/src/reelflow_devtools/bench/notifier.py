"""The notifier at scale: N concurrent WebSockets from separate load processes, its memory,
and how long a change takes to reach the last of M watchers of one project.

The load is ``bench.ws_load`` in ``processes`` processes of their own. First the
idle connections (N - M of them, spread over a few finished projects: each gets
its snapshot, then holds its socket), then a *hot* project whose clips finish one after
another from ``first_finish_s`` on, and its M watchers. A change's moment is the
clip's ``completed_at`` (set by the poller just before its write); the load
processes stamp each arrival with this machine's wall clock. A tap on the
event exchange (a queue of the benchmark's own, bound like a notifier's)
stamps when each change's event came out of RabbitMQ, which splits the
latency into the path before the notifier (poller, database, publish, broker)
and the notifier's fan-out.

The scenario runs on a stack of its own in real time (``bench.main``: simulator
speedup 1, production settings): the poller checks the hot clips as often per
second as production would. Compressed 100 x like the fast stack's, those checks
cost the poller and RabbitMQ about 0.73 s of CPU each per change, on the cores
the fan-out needs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage

from reelflow_common.topology import CLIP_UPDATED, Topology
from reelflow_devtools.bench.client import BenchError, api_client, create_project, scene
from reelflow_devtools.bench.launcher import BenchStack, cpu_seconds, memory_kib
from reelflow_devtools.bench.stats import summary_ms
from reelflow_devtools.connections import amqp


@dataclass(frozen=True)
class NotifierPlan:
    connections: int = 10_000
    hot_watchers: int = 1_000
    processes: int = 4
    idle_projects: int = 10
    hot_clips: int = 40
    #: real seconds from creating the hot project until its first clip finishes: this,
    #: plus 6 x the time the hot watchers would take at the idle ones' rate (a hot watcher's
    #: snapshot is a whole 40-clip project: they were seen to connect 5-7 x slower). Past
    #: the poller's first check of the hot clips (at production settings about 27 s after
    #: submission for a model it has not seen finish: the prior's 1 % quantile, on the
    #: ladder), as for 99 % of production's clips: that check finds all 40 processing and
    #: stores their progress, 40 events at once, which a change then would queue behind.
    first_finish_s: float = 40.0
    #: changes spread over 2 minutes: the hot watchers were seen to connect 5-15 x slower
    #: than the idle ones, so the first ones may pass before every watcher is there
    spacing_s: float = 3.0
    #: clients offer permessage-deflate, as browsers do
    deflate: bool = True
    #: handshakes in flight; each costs the notifier a snapshot read from the database
    connect_concurrency: int = 24
    #: each wait of the scenario (the hot clips end from about 50 s to 170 s after their
    #: project is created, at real time, and the project is finished just after)
    deadline_s: float = 300

    def settings(self) -> tuple[tuple[str, str], ...]:
        """The notifier's settings this plan needs beyond production's: every socket is of
        one key, on one replica, past what a production replica lets one key open."""
        return (("REELFLOW_WS_MAX_CONNECTIONS_PER_KEY", str(self.connections)),)


class LoadProcess:
    """One ``ws_load`` child: a JSON line out, a JSON line back."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> LoadProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reelflow_devtools.bench.ws_load",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise BenchError(f"a WebSocket load process exited ({self.process.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b'{"op": "quit"}\n')
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class EventTap:
    """When each ``clip.updated`` of one project came out of RabbitMQ (``seq -> wall time``)."""

    def __init__(self) -> None:
        self.project_id: str | None = None
        self.seen: dict[int, float] = {}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        at = time.time()
        body = json.loads(message.body)
        if body.get("project_id") == self.project_id:
            self.seen.setdefault(body["seq"], at)
        await message.ack()


@asynccontextmanager
async def event_tap(stack: BenchStack) -> AsyncIterator[EventTap]:
    """A queue of the benchmark's own on the event exchange, until exit."""
    tap = EventTap()
    topology = Topology.from_settings(stack.topology_settings())
    async with amqp(stack.config.amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(topology.events_exchange, f"{CLIP_UPDATED}.*")
        await queue.consume(tap.on_message)
        yield tap


def _same(answers: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    """The one answer every load process gave, or all of them when they differ."""
    return answers[0] if all(a == answers[0] for a in answers) else answers


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


async def _connect_all(
    loads: list[LoadProcess], urls: list[str], count: int, hot: bool, plan: NotifierPlan
) -> dict[str, Any]:
    shares = _shares(count, len(loads))
    answers = await asyncio.gather(
        *(
            load.ask(
                {
                    "op": "connect",
                    "url": urls[i % len(urls)],
                    "count": share,
                    "hot": hot,
                    "concurrency": max(1, plan.connect_concurrency // len(loads)),
                    "deflate": plan.deflate,
                }
            )
            for i, (load, share) in enumerate(zip(loads, shares, strict=True))
        )
    )
    errors: dict[str, int] = {}
    for answer in answers:
        for name, n in answer["errors"].items():
            errors[name] = errors.get(name, 0) + n
    return {
        "ok": sum(a["ok"] for a in answers),
        "failed": sum(a["failed"] for a in answers),
        "errors": errors,
        "seconds": max(a["seconds"] for a in answers),
    }


async def _create(stack: BenchStack, key: str, title: str, latencies_s: list[float]) -> str:
    scenes = [scene(f"{title} scene {j}", latency) for j, latency in enumerate(latencies_s)]
    async with api_client(stack.api_url, key) as api:
        return await create_project(api, {"title": title, "scenes": scenes})


async def run_notifier(
    stack: BenchStack, plan: NotifierPlan, speedup: float
) -> tuple[str, dict[str, Any]]:
    """Connect, measure, disconnect; the tenant's key and the figures."""
    key = await stack.issue_key("bench-notifier")
    # Idle watchers only hold sockets: they watch finished projects, which change no more.
    async with stack.finished_projects() as finished:
        idle = [await _create(stack, key, f"idle {i}", [0]) for i in range(plan.idle_projects)]
        await finished.wait(idle, deadline_s=plan.deadline_s)
    idle_urls = [f"{stack.ws_url}/v1/ws/projects/{p}?token={key}" for p in idle]
    notifier = stack.children["notifier"].process.pid
    loads = [await LoadProcess.start() for _ in range(plan.processes)]
    try:
        priorities = [await load.ask({"op": "priority"}) for load in loads]
        idle_connected = await _connect_all(
            loads, idle_urls, plan.connections - plan.hot_watchers, False, plan
        )
        rate = idle_connected["ok"] / max(idle_connected["seconds"], 0.1)
        first_finish_s = plan.first_finish_s + 6 * plan.hot_watchers / max(rate, 1.0)
        latencies = [(first_finish_s + j * plan.spacing_s) * speedup for j in range(plan.hot_clips)]
        async with event_tap(stack) as tap:
            hot = tap.project_id = await _create(stack, key, "hot", latencies)
            hot_url = f"{stack.ws_url}/v1/ws/projects/{hot}?token={key}"
            hot_connected = await _connect_all(loads, [hot_url], plan.hot_watchers, True, plan)
            rss_connected = memory_kib(notifier)
            cpu_before = _cpu(stack, loads)
            gc_before = await _gc_pauses(stack)
            collected = await asyncio.gather(
                *(load.ask({"op": "collect", "deadline_s": plan.deadline_s}) for load in loads)
            )
            cpu_after = _cpu(stack, loads)
            gc_after = await _gc_pauses(stack)
            rss_end = memory_kib(notifier)
    finally:
        await asyncio.gather(*(load.stop() for load in loads))
    quiet_after_s = await _until_quiet(stack, notifier, deadline_s=plan.deadline_s)
    return key, {
        "connections": plan.connections,
        "hot_watchers": plan.hot_watchers,
        "load_processes": plan.processes,
        # how the load yields the CPU to the stack (ws_load.yield_to_the_stack): one entry
        # when every process got the same
        "load_priority": _same(priorities),
        "permessage_deflate": plan.deflate,
        "hot_first_finish_s": round(first_finish_s, 1),
        "idle_connected": idle_connected,
        "hot_connected": hot_connected,
        "notifier_rss_mib_connected": round(rss_connected.get("VmRSS", 0) / 1024, 1),
        "notifier_peak_rss_mib": round(rss_end.get("VmHWM", 0) / 1024, 1),
        # CPU while the hot project's changes flowed (its keepalives and key checks too),
        # per change: what a fan-out costs whatever the machine's load, and what else
        # ran on the machine meanwhile.
        "cpu_ms_per_change": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / plan.hot_clips, 1)
            for name in cpu_before
            if name in cpu_after
        },
        # The notifier's garbage-collector passes while the changes flowed, by generation.
        "notifier_gc_passes": _gc_delta(gc_before, gc_after),
        # The load processes' own (their sockets frozen out of them: ws_load.Pauses).
        "load_gc_passes": {
            "passes": sum(part["gc_passes"]["passes"] for part in collected),
            "longest_ms": max(part["gc_passes"]["longest_ms"] for part in collected),
            "longest_cpu_ms": max(part["gc_passes"]["longest_cpu_ms"] for part in collected),
        },
        # From the load processes' exit until the notifier had closed every socket and
        # was quiet again (None: not within the deadline).
        "notifier_quiet_after_s": quiet_after_s,
        **_changes(collected, plan, tap.seen),
    }


GC_PAUSE = "reelflow_gc_pause_seconds"
WS_CONNECTIONS = "reelflow_ws_connections"
#: the notifier is quiet once a window of QUIET_WINDOW_S costs it less than QUIET_CPU_S of CPU
QUIET_WINDOW_S = 1.0
QUIET_CPU_S = 0.05


async def _until_quiet(stack: BenchStack, notifier: int, *, deadline_s: float) -> float | None:
    """Seconds until the notifier has closed every socket and is quiet; None past the deadline
    (said on stdout).

    Closing 10,000 sockets, and the full collector pass that reclaims what they
    leave (``reelflow_notifier.gcpolicy``), cost the notifier a core for seconds
    after the load processes are gone. When this scenario shared the fast stack,
    the ``api`` scenario after it shared the machine with that (on 2026-12-03,
    1.7-3.2 ms of the notifier's CPU per GET, against none when it waited); on its
    own stack, the stack's ground truth follows, and how long the notifier takes
    to be quiet is a figure of its own.
    """
    began = time.monotonic()
    # The deadline is checked between readings, never by cancelling one mid-request.
    while time.monotonic() - began < deadline_s:
        open_sockets = await _metric(stack, WS_CONNECTIONS)
        used = cpu_seconds(notifier) or 0.0
        await asyncio.sleep(QUIET_WINDOW_S)  # the notifier's CPU over a window
        if not open_sockets and (cpu_seconds(notifier) or 0.0) - used < QUIET_CPU_S:
            return round(time.monotonic() - began, 1)
    print(f"bench: the notifier was not quiet within {deadline_s:g} s", flush=True)
    return None


async def _metric(stack: BenchStack, name: str) -> float:
    """One unlabelled gauge or counter of the notifier's ``/metrics``."""
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{stack.url('notifier')}/metrics")
    answer.raise_for_status()
    for line in answer.text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise BenchError(f"the notifier's /metrics has no {name}")


async def _gc_pauses(stack: BenchStack) -> dict[str, float]:
    """The notifier's GC pause histogram, ``{"<generation> <count|sum|le>": value}``."""
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{stack.url('notifier')}/metrics")
    answer.raise_for_status()
    found: dict[str, float] = {}
    for line in answer.text.splitlines():
        if not line.startswith(GC_PAUSE):
            continue
        name, value = line.rsplit(" ", 1)
        labels = dict(
            part.split("=", 1) for part in name[name.index("{") + 1 : -1].split(",") if part
        )
        generation = labels["generation"].strip('"')
        kind = name[len(GC_PAUSE) + 1 : name.index("{")]
        if kind == "bucket":
            kind = f"le {labels['le'].strip(chr(34))}"
        found[f"{generation} {kind}"] = float(value)
    return found


def _gc_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per generation: passes, their total seconds, and passes longer than 50 / 100 ms."""
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    return {
        generation: {
            "passes": int(delta.get(f"{generation} count", 0)),
            "seconds": round(delta.get(f"{generation} sum", 0.0), 3),
            "over_50ms": int(
                delta.get(f"{generation} count", 0) - delta.get(f"{generation} le 0.05", 0)
            ),
            "over_100ms": int(
                delta.get(f"{generation} count", 0) - delta.get(f"{generation} le 0.1", 0)
            ),
        }
        for generation in ("0", "1", "2")
    }


def _cpu(stack: BenchStack, loads: list[LoadProcess]) -> dict[str, float]:
    """CPU seconds so far of the notifier, of the load processes together, of each other
    process of the stack, and of RabbitMQ when it runs on this machine: what shared the
    machine with the fan-out (the poller's checks of the hot clips among them)."""
    used = stack.cpu_seconds()
    clients = [cpu_seconds(load.process.pid) for load in loads]
    found = {
        "notifier": used.pop("notifier", 0.0),
        "load_processes": sum(spent or 0.0 for spent in clients),
        **used,
    }
    broker = stack.broker_cpu_seconds()
    if broker is not None:
        found["rabbitmq"] = broker
    return found


def _changes(
    collected: list[dict[str, Any]], plan: NotifierPlan, out_of_broker: dict[int, float]
) -> dict[str, Any]:
    latest_snapshot = max(c["latest_snapshot_seq"] for c in collected)
    merged: dict[int, dict[str, float]] = {}
    for part in collected:
        for seq_text, entry in part["changes"].items():
            seq = int(seq_text)
            into = merged.setdefault(seq, {"count": 0, "first": entry["first"], "last": 0.0})
            into["count"] += entry["count"]
            into["first"] = min(into["first"], entry["first"])
            into["last"] = max(into["last"], entry["last"])
            if "changed_at" in entry:
                into["changed_at"] = entry["changed_at"]
    # Only the changes every watcher could see live: later than the latest snapshot.
    live = {seq: e for seq, e in merged.items() if seq > latest_snapshot and "changed_at" in e}
    tapped = {seq: e for seq, e in live.items() if seq in out_of_broker}
    hot = sum(c["hot"] for c in collected)
    return {
        "changes_measured": len(live),
        "changes_missed_live": plan.hot_clips - len(live),
        "missing_deliveries": sum(hot - e["count"] for e in live.values()),
        "watchers_finished": sum(c["finished"] for c in collected),
        # Every event a hot watcher got followed the seq before it (else counted here).
        "sequence_gaps": sum(c["gaps"] for c in collected),
        "duplicates": sum(c["duplicates"] for c in collected),
        "change_to_last_watcher": summary_ms([e["last"] - e["changed_at"] for e in live.values()]),
        "first_to_last_watcher": summary_ms([e["last"] - e["first"] for e in live.values()]),
        # The same changes, split where the event came out of RabbitMQ (the benchmark's tap).
        "change_to_broker": summary_ms(
            [out_of_broker[seq] - e["changed_at"] for seq, e in tapped.items()]
        ),
        "broker_to_last_watcher": summary_ms(
            [e["last"] - out_of_broker[seq] for seq, e in tapped.items()]
        ),
    }
