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
longer than the ladder's top rung (``poll_max_delay_s``, 300 s), but a late follow's
(``CheckClip.follow_until``: a task followed on after its clip timed out), which waits up to
``late_follow_max_delay_s`` (30 min) on that rung, one hop per rung's wait.

Checks made together travel together: :class:`CheckBundles` sends the checks that
come for the same wait queue within a few milliseconds as one ``CheckClips`` (a
shared submit's clips, a project's clips checked at the same moment), so they
cost the broker and both services one publish, one delivery and one
acknowledgement instead of one each. A late follow's check goes alone: a poller of the
release before refuses it, and would refuse a whole ``CheckClips`` that carried it (the
other chains' checks dead-lettered with it) while the pollers roll.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from reelflow_common.backoff import Backoff
from reelflow_common.batching import Batcher
from reelflow_common.broker import Publisher, PublishError
from reelflow_common.messages import MAX_CHECKS_TOGETHER, CheckClip, CheckClips
from reelflow_common.topology import CHECK_CLIP

#: a check to send, and the context it was sent in
_Sent = tuple[CheckClip, contextvars.Context]

#: how long a message of checks waits for more before it goes (the handlers of one shared
#: submit request record their clips within a few milliseconds of each other)
LINGER_S = 0.005


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
    waits longer than the longest wait queue, but a late follow's (it hops)."""
    hop, routed = _routed(publisher, check, delay_s=delay_s, now=now)
    await publisher.send(CHECK_CLIP, routed, delay_s=hop)


class CheckBundles:
    """:func:`send_check`, with the checks sent to the same wait queue meanwhile in one message.

    A message to a wait queue waits ``linger_s`` after its first check for others
    (unless ``max_checks`` are waiting), then goes: one ``CheckClips``, or a lone check
    as its own ``CheckClip``. One message per wait queue is out at a time; the checks
    that come meanwhile go together in the next. Each caller returns once the broker
    confirmed the message with its check, or gets a :class:`PublishError` of its own.
    A late follow's check (``follow_until``) is sent at once, alone (module docstring).
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        max_checks: int = MAX_CHECKS_TOGETHER,
        linger_s: float = LINGER_S,
    ) -> None:
        self._publisher = publisher
        self._max_checks = max_checks
        self._linger_s = linger_s
        #: one per wait queue (a rung of the check ladder; None: the work queue itself)
        self._by_hop: dict[float | None, Batcher[_Sent, None]] = {}

    async def send(self, check: CheckClip, *, delay_s: float, now: datetime) -> None:
        """Like :func:`send_check`."""
        hop, routed = _routed(self._publisher, check, delay_s=delay_s, now=now)
        if routed.follow_until is not None:
            # Rare (one check per late follow every few minutes), and refused by a poller
            # of the release before: never in a bundle another chain's checks ride in.
            await self._publisher.send(CHECK_CLIP, routed, delay_s=hop)
            return
        bundles = self._by_hop.get(hop)
        if bundles is None:
            bundles = Batcher(
                partial(self._publish, hop), max_batch=self._max_checks, linger_s=self._linger_s
            )
            self._by_hop[hop] = bundles
        try:
            await bundles.submit((routed, contextvars.copy_context()))
        except PublishError as exc:
            # Every check of the message got the same error: each caller its own, so what
            # one adds to it (a note naming its task) stays its own.
            raise PublishError(f"the check of task {check.task_uuid} was not sent: {exc}") from exc

    async def _publish(self, hop: float | None, sent: Sequence[_Sent]) -> list[None]:
        checks = [check for check, _ in sent]
        message = (
            CheckClips(checks=checks, correlation_id=checks[0].correlation_id)
            if len(checks) > 1
            else checks[0]
        )
        # In its first check's context (trace, log fields), not the one the batcher's
        # task was made in: that may be a clip's whose check went long ago.
        await asyncio.create_task(
            self._publisher.send(CHECK_CLIP, message, delay_s=hop), context=sent[0][1]
        )
        return [None] * len(checks)


def _routed(
    publisher: Publisher, check: CheckClip, *, delay_s: float, now: datetime
) -> tuple[float | None, CheckClip]:
    """The wait queue's TTL to send ``check`` through (None: straight to the work queue),
    and ``check`` with its ``due_at`` set for that."""
    ladder = publisher.topology.backoffs[CHECK_CLIP]
    if check.follow_until is None:  # a late follow's checks are further apart: they hop
        delay_s = min(delay_s, ladder.cap_s)
    hop = hop_s(ladder, delay_s)
    if hop is None:
        return None, check.model_copy(update={"due_at": None})
    rest_s = delay_s - hop
    due_at = None if rest_s <= ladder.first_s / 2 else now + timedelta(seconds=delay_s)
    return hop, check.model_copy(update={"due_at": due_at})
