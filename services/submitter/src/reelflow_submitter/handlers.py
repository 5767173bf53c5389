"""``SubmitClip``: send one clip to Runware and record that Runware has it.

The message carries the request. Every submit reads the clip first
(``service.reads_before_submit``: does the clip still want this task?) but one: the first
handling of the first submit of a clip's first task, within ``submit_read_after_s`` of
the clip being queued (a cancel inside that window may still buy the clip). The clip may
have been cancelled while the chain waited out an outage or in its tenant's lane, or an
earlier task's late video may have replaced a retry's task; and any other copy of a first
submit reads, so a copy handled after its clip failed and was retried never buys the task
the retry replaced. If the clip no longer wants the task, the chain never buys it; it
only asks Runware whether an earlier, unanswered submit got it there, and follows it if
so (Runware bills it). A chain that provably never submitted (its first submit, handled
for the first time: ``service.may_have_submitted``) asks nothing of a cancelled or failed
clip: it ends there, so cancelling a backlog costs no Runware calls. A cancelled clip's
charge waits with its task in ``attempts.T`` for this chain's word: the chain frees it
when it ends without Runware having the task (one write), and holds it with the task it
follows otherwise. The one write (``queued → processing``) is guarded on the clip's task
and the chain's token. Only the chain whose write applied starts the clip's polling; a
duplicate whose guard fails re-publishes the clip's stored events and stops, and a
winner that crashed before starting its checks is covered by its lease and the
reconciler.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from reelflow_common import leases
from reelflow_common.broker import Publisher, confirmed_together
from reelflow_common.broker.consume import first_handling
from reelflow_common.clock import Clock
from reelflow_common.commands import first_check
from reelflow_common.domain import ClipStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import get_logger
from reelflow_common.messages import RunwareThrottled, SubmitClip
from reelflow_common.polling import PollPlanner
from reelflow_common.polling.delivery import CheckBundles, send_check
from reelflow_common.runware import (
    ErrorCategory,
    RunwareClient,
    RunwareError,
    SubmitBatcher,
    is_outage,
    is_task_not_found,
)
from reelflow_common.store import Change, ClipTask, ProjectStore, TaskFailed
from reelflow_common.store.timefmt import rfc3339
from reelflow_common.topology import SUBMIT_CLIP, retry_backoff
from reelflow_common.tracking.policy import profile_of
from reelflow_submitter.budget import BudgetGate
from reelflow_submitter.service import (
    BeforeSubmit,
    GiveUp,
    after_not_found,
    after_submit_error,
    before_resubmit,
    may_have_submitted,
    may_hold_task,
    reads_before_submit,
    video_request,
)
from reelflow_submitter.settings import Settings
from reelflow_submitter.throttle import RunwareThrottle

log = get_logger(__name__)

#: the error code of a clip its tenant's budget stopped before it was submitted
BUDGET_EXCEEDED = "budgetExceeded"
#: the error an attempt ends with when an earlier task's video replaced its task before
#: Runware had it: it is never submitted (so never bought)
TASK_REPLACED = {
    "code": "taskReplaced",
    "message": "An earlier task's video replaced this task before Runware had it.",
}
#: what a chain asks Runware with when its clip was cancelled (or failed) before this submit:
#: never the clip's error (the clip has ended), only a mark that there is no clip to fail
CLIP_GIVEN_UP = {
    "code": "clipGivenUp",
    "message": "The clip was cancelled or ended before Runware had this task.",
}

#: the statuses of a clip whose own task a copy that will not submit it repairs the events of
#: (``SubmitHandler._repeat_events``): not a cancelled one's
_EVENTS_REPEATED_FOR = (ClipStatus.PROCESSING, ClipStatus.SUCCESS, ClipStatus.FAILED)


class SubmitHandler:
    """Moves a clip ``queued → processing`` (or ``failed``).

    Safe to run twice for the same message: the task UUID was chosen before the
    first submit, so a resubmit after a crash answers ``conflictTaskUUID`` and
    nothing is billed twice.
    """

    def __init__(
        self,
        projects: ProjectStore,
        runware: RunwareClient,
        publisher: Publisher,
        settings: Settings,
        *,
        planner: PollPlanner,
        clock: Clock,
        rng: random.Random | None = None,
        throttle: RunwareThrottle | None = None,
        budgets: BudgetGate | None = None,
        shared: SubmitBatcher | None = None,
        bundles: CheckBundles | None = None,
    ) -> None:
        self._projects = projects
        self._runware = runware
        self._publisher = publisher
        self._settings = settings
        self._planner = planner
        self._now = clock
        self._rng = rng or random.Random()
        self._throttle = throttle
        self._budgets = budgets or BudgetGate(projects.ledgers, ttl_s=settings.budget_check_ttl_s)
        #: a chain's first submits share Runware requests through it; retries go alone
        self._shared = shared
        #: the first checks of clips submitted together go in one message through it
        self._bundles = bundles
        # The SubmitClip ladder: the delays chosen here land on its wait queues.
        self._backoff = retry_backoff(settings)

    async def __call__(self, message: SubmitClip) -> None:
        if message.first_attempt_at is None:
            message = message.model_copy(update={"first_attempt_at": self._now()})
        if message.final_error is not None:
            await self._verify(message)
            return
        if self._throttle is not None:
            # Before the read: a pause after a 429 may last minutes, and a cancel with it.
            await self._throttle.wait()
        # Whether an earlier try may have got this task to Runware: then nothing fails the
        # clip unasked.
        may_have_sent = may_have_submitted(message, first_handling=first_handling())
        if reads_before_submit(
            message,
            now=self._now(),
            read_after_s=self._settings.submit_read_after_s,
            may_have_submitted=may_have_sent,
        ):
            clip = await self._projects.clip_task(
                message.project_id, message.scene_index, message.task_uuid
            )
            need = before_resubmit(
                message.task_uuid,
                None if clip is None else (clip.task_uuid, clip.status),
                may_have_submitted=may_have_sent,
            )
            if need is not BeforeSubmit.SUBMIT:
                await self._not_wanted(_as_read(message, need, clip), need, clip)
                return
        if message.charge is not None and message.attempt == 1:
            over_budget = await self._budget_refusal(message)
            if over_budget is not None:
                await self._refused(message, over_budget, ask_first=may_have_sent)
                return
        webhook_url = self._settings.webhook_url(message.project_id, message.scene_index)
        # A retry goes alone: its answer can only be about its own task.
        runware = self._shared if self._shared is not None and message.attempt == 1 else None
        try:
            result = await (runware or self._runware).submit_video(
                video_request(message, webhook_url=webhook_url)
            )
        except RunwareError as error:
            if error.category is ErrorCategory.RATE_LIMIT:
                await self._throttled()
            await self._on_error(message, error, may_have_sent=may_have_sent)
            return
        if self._throttle is not None:
            self._throttle.accepted()
        if result.already_submitted:
            log.info("clip_already_at_runware")
        await self._accepted(message)

    async def _not_wanted(
        self, message: SubmitClip, need: BeforeSubmit, clip: ClipTask | None
    ) -> None:
        """Never buy a task the clip no longer wants; an earlier submit of this chain may have
        reached Runware all the same: ask, and follow it if it is there."""
        log.info("clip_submit_not_wanted", attempt=message.attempt, then=need.value)
        if (
            clip is not None
            and clip.task_uuid == message.task_uuid
            and clip.status in _EVENTS_REPEATED_FOR
        ):
            await self._repeat_events(message)
        if need is BeforeSubmit.NEVER_SUBMITTED:
            await self._never_bought(message, CLIP_GIVEN_UP)
            return
        if need is BeforeSubmit.DROP:
            return
        final_error = TASK_REPLACED if need is BeforeSubmit.ASK_REPLACED else CLIP_GIVEN_UP
        await self._verify(message.model_copy(update={"final_error": final_error}))

    async def _repeat_events(self, message: SubmitClip) -> None:
        """The clip's own task is processing (another chain recorded it), succeeded, or failed
        (by this chain's first handling, say): this copy (a redelivery after a crash, a copy
        retried after its events went unconfirmed) sends nothing to Runware, but re-publishes
        the clip's stored events, which a crash between that write and its publish may have
        left unpublished, and finishes a project such a crash left unfinished: the repair
        path of the → processing write (its guard, a queued clip of this task, no longer
        holds), which records no end. Not for a cancelled clip, whose queued task the cancel
        may hold in ``attempts`` for this chain's word (that write would take it as
        submitted)."""
        change = await self._mark_processing(message)
        await self._publisher.publish_events(change.events)

    async def _never_bought(self, message: SubmitClip, error: dict[str, str]) -> None:
        """The cancelled clip's task never reached Runware by this chain: a charge the cancel
        moved to ``attempts`` with it (queued, this chain's lease) is freed. A clip without a
        charge holds nothing there: no write."""
        if message.charge is None:
            log.info("clip_submit_chain_ended", attempt=message.attempt)
            return
        freed = await self._projects.never_submitted(
            message.project_id, message.scene_index, message.task_uuid, error, token=message.token
        )
        log.info("clip_submit_chain_ended", attempt=message.attempt, freed=freed)

    async def _throttled(self) -> None:
        """Runware said 429: every submit here pauses, and the other replicas are told."""
        if self._throttle is None:
            return
        until = self._throttle.tripped()
        if until is None:
            return  # paused already, by the same moment of overload
        try:
            await self._publisher.signal(RunwareThrottled(until=until))
        except TransientError as exc:
            log.warning("throttle_signal_failed", error=str(exc))

    async def _budget_refusal(self, message: SubmitClip) -> dict[str, str] | None:
        """The error that stops the clip if its tenant's budget is spent, before any money is.

        The project's estimate was reserved when it was created; the budget can still
        run out mid-project when clips cost more than estimated, or an operator lowers
        it. The clip ends ``failed`` (``budgetExceeded``), its reservation is released,
        and a retry works once the budget has room again.
        """
        assert message.charge is not None
        now = self._now()
        exceeded = await self._budgets.exceeded(message.tenant_id, message.charge, now)
        if exceeded is None:
            return None
        if exceeded.resets_at is None:
            then = " Retry once it has room."
        elif exceeded.resets_at <= now:  # reserved in a period that has ended since
            then = " That period has ended: a retry now counts in the current one."
        else:
            then = f" It resets at {rfc3339(exceeded.resets_at)}. Retry then."
        return {"code": BUDGET_EXCEEDED, "message": f"{exceeded.detail}{then}"}

    async def _refused(
        self, message: SubmitClip, final_error: dict[str, str], *, ask_first: bool
    ) -> None:
        """No more submits of this clip: it fails with ``final_error``, unless it must
        ``ask_first`` (Runware may hold its task already: an earlier try of this chain, or
        the lost chain a re-armed one replaces, may have got it there unseen): then Runware
        is asked, and a task it holds is followed and billed, never left running behind a
        failed clip."""
        if ask_first:
            await self._verify(message.model_copy(update={"final_error": final_error}))
        else:
            await self._fail(message, final_error)

    async def _mark_processing(self, message: SubmitClip) -> Change:
        """The chain's ``queued → processing`` write of its task (guarded on the task and the
        chain's token; the repair path when it no longer holds). Its callers handle the
        change differently on purpose: :meth:`_accepted` starts the polling of a change that
        applied, :meth:`_repeat_events` only re-publishes."""
        return await self._projects.mark_processing(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            token=message.token,
            correlation_id=message.correlation_id,
        )

    async def _accepted(self, message: SubmitClip) -> None:
        change = await self._mark_processing(message)
        if change.applied:
            assert change.at is not None
            assert change.lease_until is not None
            # The first check and the clip's events do not depend on each other: their
            # confirms overlap instead of adding up. A lost check expires the lease and
            # the message is retried, whether or not the events went out (the clip is
            # processing either way); lost events are caught up from the event log.
            await confirmed_together(
                self._start_polling(message, change.at, change.lease_until),
                self._publisher.publish_events(change.events),
            )
            log.info("clip_submitted", attempt=message.attempt)
            return
        if change.given_up:
            # Cancelled (or failed) while this submit was on its way: Runware took it all the
            # same, so it is billed. No other chain knows of it: follow it from here.
            await self._follow_given_up(message)
        else:
            # Another chain recorded it, or the clip is past this point: no second chain.
            log.info("clip_submit_not_recorded", attempt=message.attempt)
        await self._publisher.publish_events(change.events)

    async def _start_polling(
        self,
        message: SubmitClip,
        submitted_at: datetime,
        until: datetime,
    ) -> None:
        """The chain's first check, under its lease (the clip's, or the one in the attempt of
        its task)."""
        webhooks = self._settings.webhooks_enabled
        check = first_check(
            message, submitted_at=submitted_at, lease_until=until, webhooks=webhooks
        )
        delay_s = leases.bounded_step_s(
            self._planner.first_check_s(profile_of(check)),
            self._settings.lease_s,
        )
        try:
            if self._bundles is None:
                await send_check(self._publisher, check, delay_s=delay_s, now=submitted_at)
            else:
                await self._bundles.send(check, delay_s=delay_s, now=submitted_at)
        except TransientError:
            # This chain cannot go on: let the reconciler re-arm the clip without waiting
            # out the lease. The retried message then finds the clip processing and stops.
            # The lease may be in the task's attempt (a given-up task, or an earlier task
            # Runware took after a later task's video replaced it): expire it wherever it is.
            await self._projects.expire_leases(
                message.project_id,
                {message.scene_index: message.token},
                tasks={message.scene_index: message.task_uuid},
            )
            raise

    async def _on_error(
        self, message: SubmitClip, error: RunwareError, *, may_have_sent: bool
    ) -> None:
        if error.retryable:
            # Runware may have stored the task all the same: its grace counts from now.
            message = message.model_copy(update={"last_ambiguous_at": self._now()})
        assert message.first_attempt_at is not None
        decision = after_submit_error(
            error,
            attempt=message.attempt,
            outages=message.outages,
            waited_s=(self._now() - message.first_attempt_at).total_seconds(),
            max_attempts=self._settings.submit_max_attempts,
            max_wait_s=self._settings.poll_max_age_s,
            backoff=self._backoff,
            rng=self._rng,
        )
        if not isinstance(decision, GiveUp):
            if decision.outage and message.outages == 0:
                await self._waiting(message, error)
            outages = message.outages + (1 if decision.outage else 0)
            retry = message.model_copy(update={"attempt": message.attempt + 1, "outages": outages})
            await self._again(retry, decision.delay_s)
            log.warning(
                "clip_submit_retry_scheduled",
                attempt=message.attempt,
                outage=decision.outage,
                delay_s=round(decision.delay_s, 3),
                error=str(error),
            )
            return
        final_error = {"code": decision.code, "message": decision.message}
        if is_outage(error):
            # This very submit may have stored the task a moment ago, and so may an earlier
            # one whose answer was lost: ask once its task would be visible.
            verify = message.model_copy(update={"final_error": final_error})
            await self._again(verify, self._settings.not_found_grace_s)
            return
        await self._refused(
            message, final_error, ask_first=may_hold_task(error, may_have_submitted=may_have_sent)
        )

    async def _waiting(self, message: SubmitClip, error: RunwareError) -> None:
        """Show on the queued clip why it waits: the first outage this chain met."""
        change = await self._projects.record_waiting(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            {"code": error.code or error.category.value, "message": error.message},
            token=message.token,
            correlation_id=message.correlation_id,
        )
        await self._publisher.publish_events(change.events)

    async def _verify(self, message: SubmitClip) -> None:
        """The submits are over: track the task if Runware has it, else fail the clip."""
        assert message.final_error is not None
        assert message.first_attempt_at is not None
        try:
            await self._runware.get_response(message.task_uuid)
        except RunwareError as error:
            if not is_task_not_found(error):
                # Failing the clip now could leave a billed task behind a "failed" clip:
                # keep the message on the retry ladder until Runware can answer.
                raise TransientError(
                    f"cannot tell whether Runware has {message.task_uuid}: {error}"
                ) from error
            wait = after_not_found(
                now=self._now(),
                since=message.last_ambiguous_at or message.first_attempt_at,
                grace_s=self._settings.not_found_grace_s,
                backoff=self._backoff,
            )
            if wait is None and _given_up(message):
                # No clip to fail: it was cancelled (or ended) before Runware had its task.
                await self._never_bought(message, CLIP_GIVEN_UP)
            elif wait is None:
                await self._fail(message, message.final_error)
            else:
                await self._again(message, wait.delay_s)
                log.info("clip_not_visible_yet", delay_s=round(wait.delay_s, 3))
            return
        # Runware holds it: an earlier submit got through. Track it, don't fail it.
        log.info("clip_found_at_runware", attempt=message.attempt)
        if _given_up(message) and message.charge is None:
            await self._follow_given_up(message)
        else:
            # A cancelled clip's charged task waits in ``attempts`` under this chain's lease:
            # its → processing write's repair marks it so there (or follows it, given up).
            await self._accepted(message)

    async def _follow_given_up(self, message: SubmitClip) -> None:
        """Runware has the task of a clip cancelled (or failed) meanwhile, and bills it: follow
        it to its end, as a processing clip's checks go on after a cancel, under a lease in
        the clip's ``attempts`` (a fresh token) that the attempts reconciler re-arms should
        this chain be lost. Its video is recorded there; the clip stays as it is."""
        lease = await self._projects.follow_given_up(
            message.project_id, message.scene_index, message.task_uuid
        )
        if lease is None:
            # Another chain follows it (a fork, the reconciler), or its end is recorded.
            log.info("clip_given_up_followed_elsewhere", attempt=message.attempt)
            return
        following = message.model_copy(update={"token": lease.token})
        await self._start_polling(following, self._now(), lease.until)
        log.info("clip_given_up_followed", attempt=message.attempt)

    async def _again(self, message: SubmitClip, delay_s: float) -> None:
        """The next step of this chain, renewing its lease if the step would come too late.

        Not the lease of a chain that only asks about an ended clip's task, unless that task
        holds the clip's charge in ``attempts.T`` (the cancel moved the lease there with it;
        the read before kept the charge on the chain only then: ``_as_read``): otherwise the
        clip has none left to renew, and no other chain will ever ask about that task; the
        visibility grace bounds this one. Such a chain renews that entry's lease only (one
        write), and goes on whether or not its renewal applied (another chain's entry, or one
        ended already): its writes are guarded on its token.
        """
        lease_s = self._settings.lease_s
        delay_s = leases.bounded_step_s(delay_s, lease_s)
        now = self._now()
        next_at = now + timedelta(seconds=delay_s)
        due = leases.renewal_due(next_at=next_at, lease_until=message.lease_until, lease_s=lease_s)
        given_up = _given_up(message)
        if due and (not given_up or message.charge is not None):
            until = leases.renewed_until(now, lease_s)
            renewed = await self._renewed(message, until)
            if renewed:
                message = message.model_copy(update={"lease_until": until})
            elif not given_up:
                log.info("clip_submit_chain_stale")  # the clip moved on, or another chain has it
                return
        await self._publisher.send(SUBMIT_CLIP, message.following(), delay_s=delay_s)

    async def _renewed(self, message: SubmitClip, until: datetime) -> bool:
        """Renew the chain's lease to ``until``: the clip's, or its task's attempt's. A given-up
        chain's clip holds none (cancelled or failed): only the entry the cancel moved it to."""
        if _given_up(message):
            return await self._projects.renew_attempt_lease(
                message.project_id,
                message.scene_index,
                message.task_uuid,
                token=message.token,
                until_was=message.lease_until,
                until=until,
            )
        return await self._projects.renew_lease(
            message.project_id,
            message.scene_index,
            token=message.token,
            until_was=message.lease_until,
            task_uuid=message.task_uuid,
            until=until,
        )

    async def _fail(self, message: SubmitClip, final_error: dict[str, str]) -> None:
        change = await self._projects.record(
            message.project_id,
            message.scene_index,
            message.task_uuid,
            TaskFailed(code=final_error["code"], message=final_error["message"]),
            correlation_id=message.correlation_id,
            # Only this chain's clip, and only before anyone got it to Runware.
            token=message.token,
            statuses=(ClipStatus.QUEUED,),
            submit_word=True,
        )
        await self._publisher.publish_events(change.events)
        log.warning("clip_submit_failed", code=final_error["code"], error=final_error["message"])


def _as_read(message: SubmitClip, need: BeforeSubmit, clip: ClipTask | None) -> SubmitClip:
    """The chain of a given-up clip as the read shows it: its task holds the clip's charge only
    where a cancel moved it to ``attempts.T`` with the task (and this chain's lease). Without
    such an entry (the clip failed, or a release before cancelled it) the clip's end settled
    the charge: the chain goes on as one of a clip without a charge (no lease to renew,
    nothing to free; a task found at Runware is followed under a fresh lease)."""
    given_up = need in (BeforeSubmit.ASK_GIVEN_UP, BeforeSubmit.NEVER_SUBMITTED)
    if not given_up or clip is None or clip.in_attempts or message.charge is None:
        return message
    return message.model_copy(update={"charge": None})


def _given_up(message: SubmitClip) -> bool:
    """Whether this chain only asks Runware about the task of a clip that has ended."""
    return message.final_error is not None and message.final_error["code"] == CLIP_GIVEN_UP["code"]
