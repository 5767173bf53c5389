"""The simulator's memory: accepted tasks, their drawn futures, and request counters.

A task's future is drawn once, on its first accepted submit, from a random generator
seeded with the simulator seed and the taskUUID, so the same seed gives every task the
same latency, outcome and videoUUID whatever order tasks arrive in (but for
`[sim:fail=once]`, which fails the first task with its prompt). Its state is then a
pure function of the time since submit (`time.monotonic()`). `persistence.py` keeps
tasks across restarts, on the wall clock.
"""

import asyncio
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import SimConfig
from .models import ModelSpec, price
from .validation import VideoRequest

Outcome = Literal["success", "error", "hang"]
#: how many `[sim:fail=once]` prompts that have failed are remembered (the oldest go first)
FAILED_ONCE_KEPT = 10_000
ItemState = Literal["processing", "success", "error"]


@dataclass(frozen=True)
class Generation:
    """One of a task's `numberResults` videos."""

    video_uuid: str
    seed: int
    latency: float  # real seconds from submit to the end
    cost: float


@dataclass
class SimTask:
    """An accepted videoInference task and what has happened to it."""

    request: VideoRequest
    submitted_at: float
    outcome: Outcome
    error_code: str | None
    generations: list[Generation]
    drop_first_answer: bool
    webhook_plan: Literal["deliver", "drop", "duplicate"]
    submissions: int = 1
    dropped_answers: int = 0
    polls: int = 0
    webhook_attempts: int = 0
    webhook_deliveries: int = 0
    webhook_dropped: int = 0  # items whose webhook was due and deliberately not sent
    #: seconds after submit of the first getResponse that answered the task ended
    first_seen_ended: float | None = None
    #: seconds after submit of the first getResponse about the task, whatever it answered
    first_polled: float | None = None
    #: videoUUIDs whose webhook delivery has ended (delivered, dropped or given up); a
    #: frozenset, so a task without webhooks costs no allocation
    webhooks_settled: frozenset[str] = frozenset()
    timers: list[asyncio.TimerHandle] = field(default_factory=list, repr=False)

    def item_state(self, generation: Generation, now: float) -> ItemState:
        """Where one generation stands at monotonic time `now`."""
        if self.outcome == "hang" or now - self.submitted_at < generation.latency:
            return "processing"
        return "success" if self.outcome == "success" else "error"

    def progress(self, generation: Generation, now: float) -> int:
        """A 0-99 percentage for a processing item; a hanging task creeps toward 99."""
        if generation.latency <= 0:
            return 99
        return min(99, int(100 * (now - self.submitted_at) / generation.latency))

    def state(self, now: float) -> Literal["processing", "success", "error", "hang"]:
        """The whole task's ground-truth state."""
        if self.outcome == "hang":
            return "hang"
        if any(self.item_state(g, now) == "processing" for g in self.generations):
            return "processing"
        return self.outcome

    def view(self, now: float) -> dict[str, Any]:
        """The ground truth served at `/__sim/tasks/{taskUUID}`."""
        state = self.state(now)
        return {
            "task_uuid": self.request.task_uuid,
            "model": self.request.spec.air,
            "submissions": self.submissions,  # every videoInference with this UUID that arrived
            "accepted": True,
            # A hung task counts as billed: a guess (the payer's worst case); Runware's docs say
            # nothing of a task that never finishes (docs/RUNWARE.md, section 3.3)
            "billed": self.outcome != "error",
            "cost": round(sum(g.cost for g in self.generations), 4),
            "state": state,
            "outcome": self.outcome,
            "error_code": self.error_code,
            "number_results": len(self.generations),
            "latency_seconds": [g.latency for g in self.generations],
            "elapsed_seconds": now - self.submitted_at,
            "video_uuids": [g.video_uuid for g in self.generations],
            "polls": self.polls,
            "first_seen_ended_seconds": self.first_seen_ended,
            "first_polled_seconds": self.first_polled,
            "dropped_answers": self.dropped_answers,
            "webhook_url": self.request.webhook_url,
            "webhook_plan": self.webhook_plan if self.request.webhook_url else None,
            "webhook_attempts": self.webhook_attempts,
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_dropped": self.webhook_dropped,
        }


class SimState:
    """Everything the simulator remembers, for one server."""

    def __init__(self, config: SimConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        seed = config.seed
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self.public_url = (config.public_url or "").rstrip("/")
        self.fault_rng = random.Random(self.seed)  # one draw per request, in arrival order
        self.tasks: dict[str, SimTask] = {}
        self.videos: dict[str, str] = {}  # videoUUID -> taskUUID
        self.rejected: Counter[str] = Counter()  # refused submits per taskUUID
        self.task_types: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.http_status: Counter[str] = Counter()
        #: digests of the `[sim:fail=once]` prompts that have failed, oldest first
        self.failed_once: dict[str, None] = {}
        #: counts notify() calls, so a periodic save can tell whether anything happened
        self.revision = 0
        self._changed = asyncio.Event()

    def reset(self) -> None:
        """Forget every task and counter; the seed stays, so the same draws repeat."""
        for task in self.tasks.values():
            for timer in task.timers:
                timer.cancel()
        self.fault_rng.seed(self.seed)
        self.failed_once.clear()
        for container in (self.tasks, self.videos, self.rejected, self.task_types):
            container.clear()
        self.endpoints.clear()
        self.http_status.clear()
        self.notify()

    def accept(self, request: VideoRequest) -> SimTask:
        """Store a task with a new taskUUID and draw its future."""
        task = self._draw(request)
        self._remember(task, now=task.submitted_at)
        return task

    def track(self, task: SimTask) -> None:
        """Go on with a task accepted by an earlier run (`persistence.py`)."""
        digest = task.request.directives.fail_once
        if digest is not None and task.outcome == "error":
            self._note_failed_once(digest)
        self._remember(task, now=self.clock())

    def _note_failed_once(self, digest: str) -> None:
        self.failed_once[digest] = None
        while len(self.failed_once) > FAILED_ONCE_KEPT:
            del self.failed_once[next(iter(self.failed_once))]

    def _remember(self, task: SimTask, now: float) -> None:
        self.tasks[task.request.task_uuid] = task
        for generation in task.generations:
            self.videos[generation.video_uuid] = task.request.task_uuid
            if task.outcome != "hang":
                # Wakes wait_for() when the task finishes, since nothing else happens then.
                delay = max(0.0, task.submitted_at + generation.latency - now)
                task.timers.append(asyncio.get_running_loop().call_later(delay, self.notify))
        self.notify()

    def _draw(self, request: VideoRequest) -> SimTask:
        rng = random.Random(f"{self.seed}:{request.task_uuid}")
        # Always draw every number, so a changed rate never shifts the other draws.
        hang_roll, error_roll, drop_roll = rng.random(), rng.random(), rng.random()
        webhook_drop_roll, webhook_duplicate_roll = rng.random(), rng.random()
        directives, config = request.directives, self.config
        fail, once = directives.fail, directives.fail_once
        if (
            fail is None
            and once is not None
            and not directives.hang
            and once not in self.failed_once
        ):
            fail = "timeoutProvider"
            self._note_failed_once(once)
        drawn = directives.fail is None and once is None  # no fail directive decides
        outcome: Outcome = "success"
        if directives.hang or (drawn and hang_roll < config.hang_rate):
            outcome = "hang"
        elif fail is not None or (drawn and error_roll < config.task_error_rate):
            outcome = "error"
        generations = []
        for _ in range(request.number_results):
            simulated = directives.latency
            if simulated is None:
                simulated = _draw_latency(rng, request.spec)
            cost = price(request.spec, request.duration, request.resolution, request.audio)
            generations.append(
                Generation(
                    video_uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    seed=request.seed if request.seed is not None else rng.randrange(1, 2**31),
                    latency=config.real_seconds(simulated),
                    cost=cost,
                )
            )
        webhook_plan: Literal["deliver", "drop", "duplicate"] = "deliver"
        if directives.webhook is not None:
            webhook_plan = directives.webhook
        elif webhook_drop_roll < config.webhook_drop_rate:
            webhook_plan = "drop"
        elif webhook_duplicate_roll < config.webhook_duplicate_rate:
            webhook_plan = "duplicate"
        return SimTask(
            request=request,
            submitted_at=self.clock(),
            outcome=outcome,
            error_code=(fail or config.task_error_code) if outcome == "error" else None,
            generations=generations,
            drop_first_answer=directives.drop or drop_roll < config.drop_rate,
            webhook_plan=webhook_plan,
        )

    def view(self, task_uuid: str) -> dict[str, Any]:
        """Ground truth for a taskUUID, including one that was never accepted."""
        task = self.tasks.get(task_uuid)
        if task is not None:
            return task.view(self.clock())
        return {
            "task_uuid": task_uuid,
            "model": None,
            "submissions": self.rejected[task_uuid],
            "accepted": False,
            "billed": False,
            "cost": 0.0,
            "state": None,
            "webhook_attempts": 0,
            "webhook_deliveries": 0,
        }

    def video_state(self, video_uuid: str) -> Literal["missing", "ready", "expired"]:
        """Whether the videoURL serves: not before its video succeeded, nor after its ttl."""
        task = self.tasks.get(self.videos.get(video_uuid, ""))
        if task is None:
            return "missing"
        now = self.clock()
        for g in task.generations:
            if g.video_uuid != video_uuid or task.item_state(g, now) != "success":
                continue
            ttl = self.config.video_url_ttl
            done_at = task.submitted_at + g.latency
            if ttl is not None and now - done_at >= self.config.real_seconds(ttl):
                return "expired"
            return "ready"
        return "missing"

    def notify(self) -> None:
        """Wake everyone in wait_for() to re-check their condition."""
        self.revision += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds; bound it with `asyncio.timeout()`."""
        while not condition():
            await self._changed.wait()

    def stats(self) -> dict[str, Any]:
        """Request counters, served at `/__sim/stats`."""
        now = self.clock()
        states = Counter(task.state(now) for task in self.tasks.values())
        billed = [task for task in self.tasks.values() if task.outcome != "error"]
        return {
            "requests": self.endpoints["POST /v1"],
            "task_types": dict(self.task_types),
            "endpoints": dict(self.endpoints),
            "http_status": dict(self.http_status),
            "tasks": len(self.tasks),
            "task_states": dict(states),
            "billed_cost": round(sum(t.view(now)["cost"] for t in billed), 4),
            "seed": self.seed,
        }


def _draw_latency(rng: random.Random, spec: ModelSpec) -> float:
    """Simulated seconds from a log-normal around the model's median: a long right tail."""
    latency = spec.latency
    return max(latency.floor, latency.median * math.exp(latency.sigma * rng.gauss(0.0, 1.0)))
