"""Other people's poll schedules, as planners, to compare reelflow's with.

- Runware's official SDKs (TypeScript ``@runware/sdk`` 1.6.8 and Python
  ``runware-sdk`` 1.4.0): the first poll 1 s after submission, the second 0.5 s
  later, then each wait 1.5 times the previous one, capped at 10 s: polls at 1, 1.5,
  2.25, 3.375, 5.06, 7.59, 11.39, 17.09, 25.63, 35.63 s, then every 10 s.
- The seed (the app reelflow replaces): its server called the old JS SDK's
  ``videoInference``, which polls every 2 s (``setInterval``, so first at 2 s)
  until the server gives up after 120 s; that tick at 120 s loses to the
  120 s timeout armed before it, so polls at 2, 4, …, 118 s. The browser then
  asks every 15 s (``setInterval`` again: first at 135 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from reelflow_common.polling.plan import ClipProfile
from reelflow_common.polling.schedule import Plan

SDK_FIRST_S = 1.0
SDK_SECOND_S = 0.5
SDK_BACKOFF = 1.5
SDK_CAP_S = 10.0

SEED_SDK_INTERVAL_S = 2.0
SEED_SERVER_WAIT_S = 120.0
SEED_BROWSER_INTERVAL_S = 15.0


@dataclass(frozen=True)
class FixedSchedulePlanner:
    """Checks at fixed times after submission, whatever happens; learns nothing."""

    schedule: Plan

    def first_check_s(self, profile: ClipProfile) -> float:
        return self.schedule.checks[0]

    def next_check_s(
        self, profile: ClipProfile, *, elapsed_s: float, progress: int | None
    ) -> float:
        return self.schedule.next_after(elapsed_s) - elapsed_s

    def observe_completion(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None = None,
        since_progress: int | None = None,
    ) -> None:
        return None


def sdk_schedule() -> Plan:
    """The official SDKs' poll times (see the module docstring)."""
    times, delay, at = [SDK_FIRST_S], SDK_SECOND_S, SDK_FIRST_S
    while delay < SDK_CAP_S:
        at += delay
        times.append(at)
        delay = min(delay * SDK_BACKOFF, SDK_CAP_S)
    return Plan(tuple(times), SDK_CAP_S)


def seed_schedule() -> Plan:
    """The seed's poll times: the SDK's every 2 s below 120 s, then the browser's."""
    count = int(SEED_SERVER_WAIT_S / SEED_SDK_INTERVAL_S)
    server = [SEED_SDK_INTERVAL_S * k for k in range(1, count)]  # 2 … 118
    browser_first = SEED_SERVER_WAIT_S + SEED_BROWSER_INTERVAL_S
    return Plan((*server, browser_first), SEED_BROWSER_INTERVAL_S)


def sdk_planner() -> FixedSchedulePlanner:
    return FixedSchedulePlanner(sdk_schedule())


def seed_planner() -> FixedSchedulePlanner:
    return FixedSchedulePlanner(seed_schedule())
