"""The chaos monkey: SIGKILL one process at a random moment, restart it after a random pause.

It runs in the main thread, which started every process (see ``chaos.stack``).
Its first kills take every target once, in a random order (the window lasts
until they are done), so even a short run kills each service, the broker and
the database; after that the targets are drawn at random. Some ends are a
SIGTERM instead (a deploy), and must end within a bound. A process found
dead that was not killed is counted and started again, so the run carries on
and the report says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reelflow_devtools.chaos.plan import SERVICES, TARGETS, ChaosPlan
from reelflow_devtools.chaos.stack import ChaosStack


@dataclass
class Kill:
    target: str
    at_s: float  # since the window opened
    down_s: float  # from the signal until it answered again
    signal: str = "SIGKILL"
    #: SIGTERM: how long the process took to exit; None if it outlasted the bound (then SIGKILL)
    stop_s: float | None = None
    #: SIGTERM sent while this other process was down (a deploy during an outage)
    during: str | None = None


@dataclass
class MonkeyLog:
    kills: list[Kill] = field(default_factory=list)
    #: processes that exited without being killed, and when
    died_on_their_own: list[tuple[str, float]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {target: sum(k.target == target for k in self.kills) for target in TARGETS}

    def stops(self) -> list[Kill]:
        return [kill for kill in self.kills if kill.signal == "SIGTERM"]

    def overran(self) -> list[Kill]:
        """Graceful stops that did not end within the bound."""
        return [kill for kill in self.stops() if kill.stop_s is None]


def unleash(stack: ChaosStack, plan: ChaosPlan, rng: random.Random, log: MonkeyLog) -> None:
    """Kill and restart processes until the plan's window is over; leave everything running.

    A share (``plan.stop_share``) of the services' ends are a SIGTERM, as a
    deploy sends, and so is one service's end during that share of the broker's
    and the database's outages: each must exit within ``plan.stop_bound_s``.
    """
    began = time.monotonic()
    first_round = list(TARGETS)
    rng.shuffle(first_round)

    def elapsed() -> float:
        return round(time.monotonic() - began, 1)

    while True:
        supervise(rng.uniform(plan.kill_every_min_s, plan.kill_every_max_s), stack, log, began)
        if elapsed() >= plan.duration_s and not first_round:
            return
        target = first_round.pop() if first_round else rng.choice(TARGETS)
        at = elapsed()
        if target in SERVICES and rng.random() < plan.stop_share:
            stop_s = stack.stop_gracefully(target, plan.stop_bound_s)
            print(f"chaos: {at:6.1f} s  stopped {target} (SIGTERM, {_took(stop_s)})", flush=True)
            kill = Kill(target, at, 0.0, "SIGTERM", stop_s)
        else:
            stack.kill(target)
            print(f"chaos: {at:6.1f} s  killed {target}", flush=True)
            kill = Kill(target, at, 0.0)
        down = rng.uniform(plan.down_min_s, plan.down_max_s)
        if target not in SERVICES and rng.random() < plan.stop_share:
            _deploy_during(target, stack, plan, rng, log, elapsed)
        supervise(down, stack, log, began, down=target)
        stack.restart(target)
        kill.down_s = round(elapsed() - at, 1)
        log.kills.append(kill)


def _deploy_during(
    outage: str,
    stack: ChaosStack,
    plan: ChaosPlan,
    rng: random.Random,
    log: MonkeyLog,
    elapsed: Callable[[], float],
) -> None:
    """SIGTERM a service while ``outage`` is down, then start it again (still down)."""
    service = rng.choice(SERVICES)
    at = elapsed()
    stop_s = stack.stop_gracefully(service, plan.stop_bound_s)
    print(
        f"chaos: {at:6.1f} s  stopped {service} while {outage} is down (SIGTERM, {_took(stop_s)})",
        flush=True,
    )
    stack.restart(service)
    log.kills.append(Kill(service, at, round(elapsed() - at, 1), "SIGTERM", stop_s, outage))


def _took(stop_s: float | None) -> str:
    return "did NOT exit in time: SIGKILL" if stop_s is None else f"exited in {stop_s:.1f} s"


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
