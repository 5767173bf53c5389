"""The chaos monkey: SIGKILL one process at a random moment, restart it after a random pause.

It runs in the main thread, which started every process (see ``chaos.stack``).
Its first kills take every target once, in a random order (the window lasts
until they are done), so even a short run kills each service, the broker and
the database; after that the targets are drawn at random. A process found
dead that was not killed is counted and started again, so the run carries on
and the report says so.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from reelflow_devtools.chaos.plan import TARGETS, ChaosPlan
from reelflow_devtools.chaos.stack import ChaosStack


@dataclass
class Kill:
    target: str
    at_s: float  # since the window opened
    down_s: float  # from SIGKILL until it answered again


@dataclass
class MonkeyLog:
    kills: list[Kill] = field(default_factory=list)
    #: processes that exited without being killed, and when
    died_on_their_own: list[tuple[str, float]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {target: sum(k.target == target for k in self.kills) for target in TARGETS}


def unleash(stack: ChaosStack, plan: ChaosPlan, rng: random.Random, log: MonkeyLog) -> None:
    """Kill and restart processes until the plan's window is over; leave everything running."""
    began = time.monotonic()
    first_round = list(TARGETS)
    rng.shuffle(first_round)

    def elapsed() -> float:
        return time.monotonic() - began

    while True:
        supervise(rng.uniform(plan.kill_every_min_s, plan.kill_every_max_s), stack, log, began)
        if elapsed() >= plan.duration_s and not first_round:
            return
        target = first_round.pop() if first_round else rng.choice(TARGETS)
        killed_at = time.monotonic()
        stack.kill(target)
        print(f"chaos: {elapsed():6.1f} s  killed {target}", flush=True)
        supervise(rng.uniform(plan.down_min_s, plan.down_max_s), stack, log, began, down=target)
        stack.restart(target)
        log.kills.append(
            Kill(target, round(killed_at - began, 1), round(time.monotonic() - killed_at, 1))
        )


def supervise(
    seconds: float, stack: ChaosStack, log: MonkeyLog, began: float, *, down: str | None = None
) -> None:
    """Wait, restarting whatever died on its own meanwhile (``down`` was killed: it stays down)."""
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        for name in stack.died_on_their_own():
            if name == down:
                continue
            at = round(time.monotonic() - began, 1)
            print(f"chaos: {at:6.1f} s  {name} died on its own; starting it again", flush=True)
            log.died_on_their_own.append((name, at))
            stack.restart(name)
        time.sleep(0.2)  # a supervisor's idle loop; the pause bounds it
