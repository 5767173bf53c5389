"""Starting a clip's chain: the ``SubmitClip`` / ``CheckClip`` that carry what their handler needs.

Built from a project as stored (read with its requests), by the API (create,
retry) and the reconciler (re-arm), or from the ``SubmitClip`` that led to a
first check. Publishing many at once starts every publish before awaiting any
confirm, so N commands cost about one round trip to the broker, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from reelflow_common.broker import Publisher
from reelflow_common.errors import TransientError
from reelflow_common.messages import CheckClip, Message, SubmitClip
from reelflow_common.store import Lease, Project


def submit_command(
    project: Project,
    scene_index: int,
    *,
    lease: Lease | None = None,
    correlation_id: str | None = None,
) -> SubmitClip:
    """The first ``SubmitClip`` of the chain that holds the scene's lease (or ``lease``)."""
    clip = project.clips[scene_index]
    lease = lease or clip.lease
    assert lease is not None, "only an open clip with a lease is submitted"
    assert project.requests is not None, "read the project with its requests"
    return SubmitClip(
        project_id=project.id,
        tenant_id=project.tenant_id,
        scene_index=scene_index,
        task_uuid=clip.task_uuid,
        token=lease.token,
        lease_until=lease.until,
        model=project.model,
        request=project.requests[scene_index],
        correlation_id=correlation_id or project.correlation_id,
        charge=clip.charge,
        after_earlier_tasks=bool(clip.attempts),
        queued_at=clip.queued_at or project.created_at,
        scene_count=len(project.clips),
    )


def check_command(
    project: Project,
    scene_index: int,
    *,
    lease: Lease | None = None,
    submitted_at: datetime | None = None,
    webhooks: bool = False,
    correlation_id: str | None = None,
    replaced_task: str | None = None,
) -> CheckClip:
    """The first ``CheckClip`` of the chain that holds the (processing) scene's lease.

    ``submitted_at``: the clip was recorded processing just now, at that time.
    ``replaced_task``: the chain follows that task of the clip's ``attempts`` (``lease``); a
    late follow's (``Attempt.follow_until``) up to its end.
    """
    clip = project.clips[scene_index]
    task_uuid = clip.task_uuid
    lease = lease or clip.lease
    assert lease is not None, "only an open clip with a lease is checked"
    assert project.requests is not None, "read the project with its requests"
    request = project.requests[scene_index]
    follow_until = None
    if submitted_at is not None:  # just recorded processing: the watch starts now
        watched_since = submitted_at
    elif replaced_task is not None:
        task_uuid, attempt = replaced_task, clip.attempts[replaced_task]
        submitted_at = attempt.submitted_at
        watched_since = attempt.watch_start() or project.created_at
        follow_until = attempt.follow_until
    else:
        submitted_at = clip.submitted_at
        watched_since = clip.watch_start() or project.created_at
    return CheckClip(
        project_id=project.id,
        scene_index=scene_index,
        task_uuid=task_uuid,
        token=lease.token,
        lease_until=lease.until,
        submitted_at=submitted_at or watched_since,
        watched_since=watched_since,
        model=project.model,
        duration=request.duration,
        width=request.width,
        height=request.height,
        webhooks=webhooks,
        correlation_id=correlation_id or project.correlation_id,
        scene_count=len(project.clips),
        follow_until=follow_until,
    )


def first_check(
    submitted: SubmitClip, *, submitted_at: datetime, lease_until: datetime, webhooks: bool
) -> CheckClip:
    """The check that follows a submit Runware accepted: same chain, same token."""
    request = submitted.request
    return CheckClip(
        project_id=submitted.project_id,
        scene_index=submitted.scene_index,
        task_uuid=submitted.task_uuid,
        token=submitted.token,
        lease_until=lease_until,
        submitted_at=submitted_at,
        watched_since=submitted_at,
        model=submitted.model,
        duration=request.duration,
        width=request.width,
        height=request.height,
        webhooks=webhooks,
        correlation_id=submitted.correlation_id,
        scene_count=submitted.scene_count,
    )


async def send_each(
    publisher: Publisher,
    work_queue: str,
    messages: Sequence[Message],
    *,
    delay_s: float | None = None,
    to: str | None = None,
) -> list[tuple[Message, TransientError]]:
    """Publish every message, all confirms awaited together; the ones not confirmed, and why.

    ``to``: another queue of the work queue's messages (``Publisher.send``). Only an
    outage (``TransientError``: ``Unroutable`` for a queue that is gone) counts as not
    confirmed; anything else is a bug and is raised.
    """
    results = await asyncio.gather(
        *(publisher.send(work_queue, message, delay_s=delay_s, to=to) for message in messages),
        return_exceptions=True,
    )
    failed: list[tuple[Message, TransientError]] = []
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, TransientError):
            failed.append((message, result))
        elif isinstance(result, BaseException):
            raise result
    return failed


async def send_all(
    publisher: Publisher,
    work_queue: str,
    messages: Sequence[Message],
    *,
    delay_s: float | None = None,
) -> list[Message]:
    """Publish every message, confirms awaited together (``send_each``); the ones not confirmed."""
    failed = await send_each(publisher, work_queue, messages, delay_s=delay_s)
    return [message for message, _error in failed]
