"""A check's delay, delivered to within half the shortest rung of the check ladder.

A delay travels through RabbitMQ as the TTL of one of the check wait queues, a
ladder of fixed rungs x1.35 apart. Put on the nearest rung, a delay is up to 16 %
off: a check planned from Runware's progress 45 s ahead comes 7 s after the
finish, or early, where it finds the task still running and costs a call. So a
check goes through the longest rung not above its delay and carries when it is
due (``CheckClip.due_at``); a poller that takes it before then sends it on for
the rest the same way, without asking Runware and without the database (a
*hop*). Each hop leaves at most 26 % of the wait (1 - 1/1.35), so a 60 s delay
on the default ladder (1 s … 300 s) takes at most four hops, and the check comes
within half the shortest rung (0.5 s) of its time. As before, no check waits
longer than the ladder's top rung (``poll_max_delay_s``, 300 s).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reelflow_common.backoff import Backoff
from reelflow_common.broker import Publisher
from reelflow_common.messages import CheckClip
from reelflow_common.topology import CHECK_CLIP


def hop_s(ladder: Backoff, remaining_s: float) -> float | None:
    """The wait queue's TTL to send a check due in ``remaining_s`` through; None: due now."""
    if remaining_s <= ladder.first_s / 2:
        return None
    return ladder.rung_at_most_ms(remaining_s) / 1000


def not_yet_due_s(publisher: Publisher, check: CheckClip, now: datetime) -> float | None:
    """Seconds until ``check`` is due, if it came too early to be made now; else None."""
    if check.due_at is None:
        return None
    remaining_s = (check.due_at - now).total_seconds()
    return remaining_s if hop_s(publisher.topology.backoffs[CHECK_CLIP], remaining_s) else None


async def send_check(
    publisher: Publisher, check: CheckClip, *, delay_s: float, now: datetime
) -> None:
    """Send ``check`` to be made ``delay_s`` from ``now`` (see the module docstring), or
    after the ladder's top rung (``poll_max_delay_s``) if that is shorter: no check
    waits longer than the longest wait queue."""
    ladder = publisher.topology.backoffs[CHECK_CLIP]
    delay_s = min(delay_s, ladder.cap_s)
    hop = hop_s(ladder, delay_s)
    if hop is None:
        await publisher.send(CHECK_CLIP, check.model_copy(update={"due_at": None}))
        return
    rest_s = delay_s - hop
    due_at = None if rest_s <= ladder.first_s / 2 else now + timedelta(seconds=delay_s)
    await publisher.send(CHECK_CLIP, check.model_copy(update={"due_at": due_at}), delay_s=hop)
