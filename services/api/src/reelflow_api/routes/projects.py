"""``/v1/projects``: create, read, list, retry and cancel projects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pymongo.errors import PyMongoError

from reelflow_api.conditional import REVALIDATED_HEADERS, revalidated
from reelflow_api.created import CREATED_HEADERS, IDEMPOTENCY_REPLAYED
from reelflow_api.deps import AppState, IndexesEnsured, State, TenantGrant, TenantId, app_state
from reelflow_api.lanes import send_submits
from reelflow_api.middleware import start_waiting
from reelflow_api.problems import (
    Problem,
    clips_busy,
    invalid_request,
    limit_exceeded,
    not_found,
    problem_responses,
    request_in_progress,
    retry_in_progress,
)
from reelflow_api.schemas import CreateProjectIn, ProjectCancelled, ProjectChanged, ProjectList
from reelflow_api.telemetry import correlation_id
from reelflow_common.accounting import Charge, KeyInProgress, LimitExceeded, TenantLimits
from reelflow_common.accounting.limits import check_shape
from reelflow_common.commands import check_command, send_all, submit_command
from reelflow_common.domain import ClipRequest, ProjectStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.messages import CheckClip, Message, SubmitClip
from reelflow_common.runware.catalogue import default_duration, rule_violations
from reelflow_common.store import (
    ClipState,
    CreateResult,
    Event,
    IdempotencyConflict,
    IdempotencyKeyChurn,
    NewProject,
    Outcome,
    Project,
    ProjectStatusView,
)
from reelflow_common.topology import CHECK_CLIP

router = APIRouter(
    prefix="/v1/projects", tags=["projects"], responses=problem_responses(401, 422, 503)
)
log = get_logger(__name__)


def _request_hash(body: CreateProjectIn) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_project(
    body: CreateProjectIn, state: AppState, tenant_id: str, **extra: Any
) -> NewProject:
    settings = state.settings
    model = body.model or settings.default_model
    duration = default_duration(model, settings.default_duration)
    return NewProject(
        tenant_id=tenant_id,
        title=body.title,
        model=model,
        scenes=[
            ClipRequest(
                prompt=scene.prompt,
                negative_prompt=scene.negative_prompt,
                duration=scene.duration if scene.duration is not None else duration,
                width=scene.width if scene.width is not None else settings.default_width,
                height=scene.height if scene.height is not None else settings.default_height,
                seed=scene.seed,
                fps=scene.fps,
            )
            for scene in body.scenes
        ],
        **extra,
    )


def _check_model_rules(new: NewProject) -> None:
    """422 for a scene its model would refuse (docs/RUNWARE.md §2.3), before anything is spent.

    The defaults count (a width and height not named are the configured ones). A
    replay does not get it (:func:`_replay_or_check`).
    """
    found = rule_violations(new.model, new.scenes)
    if not found:
        return
    errors = [
        {
            "loc": ["body", "scenes", v.scene_index, v.field],
            # What a person reads says what the model allows; programs have it as a list.
            "msg": f"{v.message}: {new.model}" + _allowed(v.allowed),
            **({"allowed": v.allowed} if v.allowed is not None else {}),
        }
        for v in found
    ]
    raise invalid_request(errors)


def _check_request(limits: TenantLimits, new: NewProject) -> None:
    """What refuses a create whatever the tenant holds: a scene its model would refuse
    (``Problem``, 422), a model or a number of scenes the tenant may not use
    (``LimitExceeded``, 403)."""
    _check_model_rules(new)
    check_shape(limits, scenes=len(new.scenes), model=new.model)


def _refused(state: AppState, new: NewProject, exc: LimitExceeded) -> Problem:
    log.info("project_refused", limit=exc.limit.value, tenant_id=new.tenant_id)
    return limit_exceeded(exc, now=state.projects.now())


async def _replay_or_check(
    state: AppState, limits: TenantLimits, new: NewProject
) -> Project | None:
    """The project an earlier request with ``new``'s Idempotency-Key made, or None once the
    checks of :func:`_check_request` let ``new`` be created; their refusal otherwise.

    A replay answers with its project whatever the checks say now: the model rules,
    the defaults or the tenant's limits may have changed since it was accepted, and
    that project is running and billed; a refusal would tell the client nothing was
    made, and invite it to buy it again. For a tenant with a ledger the replay is
    looked up first (it must not reserve its clips again); for the others only when a
    check refuses, since their create finds a replay by its insert (the key's unique
    index): a request that passes costs no read more, and one without a key none.
    """
    if limits.needs_ledger:
        replayed = await state.projects.replay_of(new)
        if replayed is None:
            try:
                _check_request(limits, new)
            except LimitExceeded as exc:
                raise _refused(state, new, exc) from exc
        return replayed
    try:
        _check_request(limits, new)
    except (Problem, LimitExceeded) as exc:
        replayed = await state.projects.replay_of(new)  # without a key: None, no read
        if replayed is not None:
            return replayed
        if isinstance(exc, LimitExceeded):
            raise _refused(state, new, exc) from exc
        raise
    return None


def _allowed(values: Sequence[object] | None) -> str:
    """`` (allowed: 4, 6, 8)``, or nothing when the rule has no list."""
    return f" (allowed: {', '.join(str(value) for value in values)})" if values else ""


async def _dispatch(
    state: AppState,
    project: Project,
    *,
    submit: Sequence[int],
    check: Sequence[int] = (),
    correlation: str | None,
) -> None:
    """Start the chains of these scenes: every publish started at once, every confirm awaited.

    A publish the broker does not confirm leaves its clip's lease to run out; this
    expires those leases at once instead, so the reconciler re-dispatches the clips
    after its grace. An API that dies before publishing is covered by the leases too.
    """
    webhooks = state.settings.webhooks_enabled
    submits = [submit_command(project, i, correlation_id=correlation) for i in submit]
    checks = [
        check_command(project, i, webhooks=webhooks, correlation_id=correlation) for i in check
    ]
    failed: list[Message] = []
    if submits:
        failed += await send_submits(state.publisher, state.lanes, submits)
    if checks:
        failed += await send_all(state.publisher, CHECK_CLIP, checks)
    if not failed:
        return
    log.warning("dispatch_deferred", project_id=project.id, clips=len(failed))
    chains = [m for m in failed if isinstance(m, SubmitClip | CheckClip)]
    tokens = {m.scene_index: m.token for m in chains}
    tasks = {m.scene_index: m.task_uuid for m in chains}
    try:
        await state.projects.expire_leases(project.id, tokens, tasks=tasks)
    except PyMongoError as exc:
        # The leases run out by themselves; the reconciler only takes longer to come.
        log.warning("leases_not_expired", project_id=project.id, error=repr(exc))


async def _reserve(
    state: AppState,
    tenant_id: str,
    limits: TenantLimits,
    model: str,
    scenes: Sequence[ClipRequest],
    *,
    idempotency_key: str | None = None,
    retrying: str | None = None,
) -> list[Charge] | None:
    """Hold the scenes' clips and estimated cost on the tenant's ledger: one guarded write.

    None for a tenant whose limits need no ledger. Raises ``LimitExceeded``, or
    ``KeyInProgress`` for a create refused for the room a request with its
    ``idempotency_key`` holds (a retry of the project ``retrying``, for the room another
    retry of it holds).
    """
    if not limits.needs_ledger:
        return None
    # The estimate even without a budget (an in-flight limit): a budget set later finds these
    # clips committed at what they will cost, not $0. The prices are cached: no operation more.
    estimates = await state.estimator.estimate(
        model, scenes, default_duration=state.settings.default_duration
    )
    charge = await state.projects.ledgers.reserve(
        tenant_id,
        limits,
        clips=len(scenes),
        usd=sum(estimates),
        now=state.projects.now(),
        idempotency_key=idempotency_key,
        retrying=retrying,
    )
    return None if charge is None else charge.split(estimates)


async def _reserve_and_create(
    state: AppState, limits: TenantLimits, new: NewProject, *, correlation: str | None
) -> CreateResult:
    """Reserve on the tenant's ledger (429, 402: ``Problem``), then create; the request's
    checks (:func:`_replay_or_check`) are passed already.

    A create refused for the room a request with its Idempotency-Key holds (its twin,
    ``KeyInProgress``) answers with that request's project once it is stored, as a replay,
    and 409 with ``Retry-After`` until then: never a refusal for its own twin's room.
    """
    try:
        charges = await _reserve(
            state,
            new.tenant_id,
            limits,
            new.model,
            new.scenes,
            idempotency_key=new.idempotency_key,
        )
    except LimitExceeded as exc:
        raise _refused(state, new, exc) from exc
    except KeyInProgress as exc:
        replayed = await state.projects.replay_of(new)
        if replayed is None:
            log.info("project_twin_in_progress", tenant_id=new.tenant_id)
            raise request_in_progress() from exc
        return CreateResult(project=replayed, created=False)
    return await state.outliving.run(
        _create_and_dispatch(state, new, charges, correlation=correlation)
    )


#: what :meth:`ProjectStore.create` raises once the server refused its insert: nothing stored
_REFUSED = (IdempotencyKeyChurn, IdempotencyConflict)


async def _create_and_dispatch(
    state: AppState, new: NewProject, charges: list[Charge] | None, *, correlation: str | None
) -> CreateResult:
    """Store the project (holding ``charges`` when the tenant has a ledger) and start its
    clips' chains; run by :class:`~reelflow_api.outliving.OutlivingWork`, so a client that
    goes away (or a shutdown) cuts neither the insert from the reservation's fate nor the
    stored project from its dispatch."""
    if charges is None:
        result = await state.projects.create(new)
    else:
        result = await _create_or_release(state, new, charges)
    if result.created:
        project = result.project
        with bound_context(project_id=project.id, tenant_id=project.tenant_id):
            scenes = [clip.scene_index for clip in project.clips]
            await _dispatch(state, project, submit=scenes, correlation=correlation)
            log.info("project_created", clips=len(project.clips), model=project.model)
    return result


async def _create_or_release(
    state: AppState, new: NewProject, charges: list[Charge]
) -> CreateResult:
    """Create the project holding ``charges``; give them back only when no project holds them.

    A stored project settles its charges as its clips end: released as well, they
    would be counted off twice, and the tenant could spend past its budget. The id
    is chosen here so that a create whose outcome is unknown (an error after its
    insert was sent: a lost connection, a timeout) is looked up by it
    (:func:`_release_unless_stored`). One window stays open without transactions:
    a server that applies the insert after that read found nothing (the driver gave
    up on it first). The charges are then both released and settled.
    """
    project_id = str(uuid.uuid4())
    try:
        result = await state.projects.create(
            new.model_copy(update={"charges": charges}), project_id=project_id
        )
    except _REFUSED:
        await state.projects.ledgers.give_back(new.tenant_id, charges)
        raise
    except BaseException:
        await _release_unless_stored(state, new.tenant_id, charges, project_id)
        raise
    if not result.created:  # a concurrent replay: its project holds its own reservation
        await state.projects.ledgers.give_back(new.tenant_id, charges)
    return result


async def _release_unless_stored(
    state: AppState, tenant_id: str, charges: list[Charge], project_id: str
) -> None:
    """Give back the reservation of a create whose outcome is unknown, if its project is not
    stored (one read by ``_id``). A failed read keeps it: the tenant's budget is then
    understated, never overstated."""
    try:
        stored = await state.projects.get(project_id) is not None
    except PyMongoError as exc:
        log.warning(
            "reservation_not_released", tenant_id=tenant_id, project_id=project_id, error=repr(exc)
        )
        return
    if not stored:
        await state.projects.ledgers.give_back(tenant_id, charges)


async def _announce(state: AppState, events: list[Event]) -> None:
    """Publish the events of a change already stored; a broker outage must not undo the answer.

    WebSocket clients that miss them catch up from the event log at their next
    event or reconnect.
    """
    try:
        await state.publisher.publish_events(events)
    except TransientError as exc:
        log.warning("events_not_published", events=len(events), error=repr(exc))


async def _wait_for_terminal(state: AppState, project: Project, wait_s: float) -> Project:
    """The project once no clip is pending, or as it is after ``wait_s`` (hybrid mode).

    Woken by the project's ``project.finished`` (``wakeups.py``), not by polling:
    MongoDB is read once when the wait starts (an event before it was missed),
    once per wake-up, at the deadline, and every ``wait_check_interval_s`` as a
    safety net for a lost event.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    with state.wakeups.watching(project.id) as woken:
        while project.counts.pending:
            woken.clear()  # before reading: an event during the read wakes the next wait
            try:
                project = await state.projects.get(project.id) or project
            except PyMongoError as exc:
                # The project is stored; answer with what is known rather than a 503.
                log.warning("wait_interrupted", error=repr(exc))
                break
            remaining = deadline - loop.time()
            if not project.counts.pending or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    woken.wait(), min(remaining, state.settings.wait_check_interval_s)
                )
    return project


def _status_json(
    state: AppState,
    project: Project,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    clips_changed: int | None = None,
    clips_may_be_billed: int | None = None,
) -> Response:
    """The project's status as the API answers it (``ProjectStatusView.wire``); with
    ``clips_changed``, a retry's (:class:`ProjectChanged`); with ``clips_may_be_billed`` too,
    a cancel's (:class:`ProjectCancelled`).

    Written by pydantic in one pass: ``JSONResponse(view.wire())`` built the dict
    and then walked it again with ``json.dumps`` (34 against 11 µs for a
    10-scene project), on every read and every create.
    """
    view = project.public_status(include_results=True, links=state.links)
    if clips_changed is not None and clips_may_be_billed is not None:
        view = ProjectCancelled(
            **dict(view), clips_changed=clips_changed, clips_may_be_billed=clips_may_be_billed
        )
    elif clips_changed is not None:
        view = ProjectChanged(**dict(view), clips_changed=clips_changed)
    return Response(
        view.wire_json(), status_code=status_code, headers=headers, media_type="application/json"
    )


def _status_response(
    state: AppState,
    project: Project,
    *,
    status_code: int,
    clips_changed: int | None = None,
    clips_may_be_billed: int | None = None,
    replayed: bool = False,
) -> Response:
    headers = {"Location": f"/v1/projects/{project.id}"}
    if replayed:
        headers[IDEMPOTENCY_REPLAYED] = "true"
    return _status_json(
        state,
        project,
        status_code=status_code,
        headers=headers,
        clips_changed=clips_changed,
        clips_may_be_billed=clips_may_be_billed,
    )


def _changed_response(state: AppState, outcome: Outcome, *, cancel: bool = False) -> Response:
    """A retry's or a cancel's answer: ``202`` whether or not there was anything to do (as it
    always was), with the project's status and ``clips_changed`` saying which; a cancel's
    with ``clips_may_be_billed`` too."""
    return _status_response(
        state,
        outcome.project,
        status_code=202,
        clips_changed=outcome.clips_changed,
        clips_may_be_billed=len(outcome.may_be_billed) if cancel else None,
    )


async def _wait_s(
    request: Request,
    wait: Annotated[
        float,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="seconds to wait for the clips to finish, up to the `max_wait_s`"
            " setting (120 by default)",
        ),
    ] = 0,
) -> float:
    """``?wait=``, bounded by the ``max_wait_s`` setting (the OpenAPI document shows it).

    ``async`` though it awaits nothing: FastAPI would run a plain ``def`` in a worker thread.
    """
    bound = app_state(request).settings.max_wait_s
    if wait > bound:
        msg = f"Input should be less than or equal to {bound:g}"
        raise Problem(
            422,
            "Invalid Request",
            f"query.wait: {msg}",
            errors=[{"loc": ["query", "wait"], "msg": msg}],
        )
    return wait


#: every answer that carries a project status
_STATUS = {"model": ProjectStatusView}


@router.post(
    "",
    status_code=202,
    dependencies=[IndexesEnsured],
    response_model=ProjectStatusView,
    response_description="The project is created (or replayed for the same Idempotency-Key);"
    " clips still pending. `Location` names it.",
    responses={
        200: {
            **_STATUS,
            "description": "`wait` was given and every clip is terminal",
            "headers": CREATED_HEADERS,
        },
        202: {"headers": CREATED_HEADERS},
        **problem_responses(402, 403, 409, 413, 429),
    },
)
async def create_project(
    body: CreateProjectIn,
    request: Request,
    state: State,
    grant: TenantGrant,
    wait_s: Annotated[float, Depends(_wait_s)],
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> Response:
    """Create a project: one Runware task per scene. ``wait`` returns finished clips at once.

    The tenant's limits are checked first, before anything is stored or spent: a
    model or a number of scenes it may not use is 403, too many clips in flight
    429, a budget without room for the project's estimated cost 402. A request
    whose twin (the same Idempotency-Key) holds that room gets the twin's answer
    once its project is stored, and 409 with ``Retry-After`` until then. A request
    repeated with the Idempotency-Key of a project already accepted answers with that
    project, whatever the limits (or the model rules) say now, marked
    ``Idempotency-Replayed: true``.
    """
    correlation = correlation_id(request)
    tenant_id = grant.tenant_id
    new = _new_project(
        body,
        state,
        tenant_id,
        idempotency_key=idempotency_key,
        request_hash=_request_hash(body),
        correlation_id=correlation,
    )
    replayed = await _replay_or_check(state, grant.limits, new)
    if replayed is not None:
        result = CreateResult(project=replayed, created=False)
    else:
        result = await _reserve_and_create(state, grant.limits, new, correlation=correlation)
    project = result.project
    with bound_context(project_id=project.id, tenant_id=tenant_id):
        # With too many POSTs waiting already, this one answers at once (202, clips pending).
        if wait_s > 0 and start_waiting(request):
            project = await _wait_for_terminal(state, project, wait_s)
        done = wait_s > 0 and project.counts.pending == 0
        return _status_response(
            state, project, status_code=200 if done else 202, replayed=not result.created
        )


@router.get(
    "/{project_id}",
    response_model=ProjectStatusView,
    responses={
        200: {"headers": REVALIDATED_HEADERS},
        304: {
            "description": "`If-None-Match` names the status's `ETag`: it is the same (no body)",
            "headers": REVALIDATED_HEADERS,
        },
        **problem_responses(404),
    },
)
async def get_project(
    project_id: str,
    state: State,
    tenant_id: TenantId,
    if_none_match: Annotated[
        str | None,
        Header(description="the `ETag` of the status the client has: 304 while it is the same"),
    ] = None,
) -> Response:
    """The project status; its first fields are exactly the seed's ``check-clips-status``.

    With an ``ETag``: a client that sends it back as ``If-None-Match`` gets ``304 Not
    Modified`` without a body while the status is the same.
    """
    project = await state.project_reads.submit((project_id, tenant_id))
    if project is None:
        raise not_found()
    return revalidated(_status_json(state, project), if_none_match)


@router.get("", response_model=ProjectList)
async def list_projects(
    state: State,
    tenant_id: TenantId,
    status: ProjectStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; none for the first")
    ] = None,
) -> JSONResponse:
    """The tenant's projects, newest first, cursor-paginated."""
    projects, next_cursor = await state.projects.list(
        tenant_id, status=status, limit=limit, cursor=cursor
    )
    page = ProjectList(
        items=[project.public_status(include_results=False) for project in projects],
        next_cursor=next_cursor,
    )
    return JSONResponse(page.wire())


@router.post(
    "/{project_id}/retry",
    status_code=202,
    response_model=ProjectChanged,
    responses=problem_responses(402, 403, 404, 409, 429),
)
async def retry_project(
    project_id: str, request: Request, state: State, grant: TenantGrant
) -> Response:
    """Follow every failed clip again; ``clips_changed`` is 0 when there was none.

    A clip whose task Runware failed gets a new task (the failed one stays in its
    ``attempts``); a clip that only ran out of time on our side (``timedOut``) is
    watched again, same task, since Runware may still finish and bill it. A failed
    clip with a late video takes it, at no charge. Cancelled clips stay cancelled.

    Of concurrent retries, one follows each clip again; the others answer 0 (or 409 with
    ``Retry-After`` while one holds room and has not written its clips), never a 402 or
    429 for room they hold.
    """
    correlation = correlation_id(request)

    async def reserve(project: Project, failed: list[ClipState]) -> dict[int, Charge] | None:
        # Clips followed again, most on new tasks: what the tenant may use now applies (403).
        check_shape(grant.limits, scenes=len(project.clips), model=project.model)
        assert project.requests is not None  # read with its requests for this
        scenes = [project.requests[clip.scene_index] for clip in failed]
        charges = await _reserve(
            state, grant.tenant_id, grant.limits, project.model, scenes, retrying=project.id
        )
        if charges is None:
            return None
        return {clip.scene_index: charge for clip, charge in zip(failed, charges, strict=True)}

    async def retry_and_dispatch() -> Outcome | None:
        """The clips' writes, the release of the charges none holds and the dispatch of
        what was retried, whole (run to its end whether or not the request is)."""
        retried = await state.projects.retry(
            project_id, tenant_id=grant.tenant_id, correlation_id=correlation, reserve=reserve
        )
        if retried is None:
            return None
        await _announce(state, retried.events)
        if retried.resubmit or retried.rewatch:
            with bound_context(project_id=project_id, tenant_id=grant.tenant_id):
                await _dispatch(
                    state,
                    retried.project,
                    submit=retried.resubmit,
                    check=retried.rewatch,
                    correlation=correlation,
                )
                log.info(
                    "project_retried",
                    new_tasks=len(retried.resubmit),
                    rewatched=len(retried.rewatch),
                )
        return retried

    try:
        retried = await state.outliving.run(retry_and_dispatch())
    except LimitExceeded as exc:
        raise limit_exceeded(exc, now=state.projects.now()) from exc
    except KeyInProgress as exc:
        log.info("project_retry_in_progress", project_id=project_id, tenant_id=grant.tenant_id)
        raise retry_in_progress() from exc
    if retried is None:
        raise not_found()
    if retried.busy:
        raise clips_busy(len(retried.busy), done="retried")
    return _changed_response(state, retried)


@router.post(
    "/{project_id}/cancel",
    status_code=202,
    response_model=ProjectCancelled,
    responses=problem_responses(404),
)
async def cancel_project(
    project_id: str, request: Request, state: State, tenant_id: TenantId
) -> Response:
    """Stop what has not finished: every clip not yet terminal becomes ``cancelled``;
    ``clips_changed`` is 0 when no clip is queued or processing; ``clips_may_be_billed`` of those it
    cancelled, the ones reelflow knows Runware may bill all the same (not an upper bound)."""
    with bound_context(project_id=project_id, tenant_id=tenant_id):
        cancelled = await state.projects.cancel(
            project_id,
            tenant_id=tenant_id,
            correlation_id=correlation_id(request),
            submit_read_after_s=state.settings.submit_read_after_s,
        )
        if cancelled is None:
            raise not_found()
        # What a cancel did, and what Runware may bill all the same: a tenant's question later.
        log.info(
            "project_cancel",
            clips_changed=cancelled.clips_changed,
            clips_may_be_billed=len(cancelled.may_be_billed),
            clips_busy=len(cancelled.busy),
        )
        await _announce(state, cancelled.events)
        if cancelled.busy:
            raise clips_busy(len(cancelled.busy), done="cancelled")
        return _changed_response(state, cancelled, cancel=True)
