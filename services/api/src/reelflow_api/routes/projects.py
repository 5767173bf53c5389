"""``/v1/projects``: create, read, list, retry and cancel projects."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from reelflow_api.deps import AppState, IndexesEnsured, State, TenantId
from reelflow_api.middleware import start_waiting
from reelflow_api.problems import not_found, problem_responses
from reelflow_api.schemas import CreateProjectIn, ProjectList
from reelflow_common.dispatch import dispatch_project
from reelflow_common.domain import ProjectStatus
from reelflow_common.errors import TransientError
from reelflow_common.logging import bound_context, get_logger
from reelflow_common.store import Event, NewClip, NewProject, Project

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
    return NewProject(
        tenant_id=tenant_id,
        title=body.title,
        model=body.model or settings.default_model,
        scenes=[
            NewClip(
                prompt=scene.prompt,
                negative_prompt=scene.negative_prompt,
                duration=scene.duration
                if scene.duration is not None
                else settings.default_duration,
                width=scene.width if scene.width is not None else settings.default_width,
                height=scene.height if scene.height is not None else settings.default_height,
                seed=scene.seed,
                fps=scene.fps,
            )
            for scene in body.scenes
        ],
        **extra,
    )


async def _dispatch(state: AppState, project: Project, request_id: str | None) -> None:
    try:
        await dispatch_project(state.publisher, state.projects, project, correlation_id=request_id)
    except (TransientError, PyMongoError) as exc:
        # The project is stored and not marked dispatched: the submitter's sweeper
        # dispatches it when the broker (or MongoDB) is back. The answer stays a 202.
        log.warning("dispatch_deferred", project_id=project.id, error=repr(exc))


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
    """Re-read the project until no clip is pending or ``wait_s`` has passed (hybrid mode)."""
    deadline = time.monotonic() + wait_s
    while project.counts.pending and time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        await asyncio.sleep(min(state.settings.wait_check_interval_s, max(remaining, 0)))
        try:
            project = await state.projects.get(project.id) or project
        except PyMongoError as exc:
            # The project is stored; answer with what is known rather than a 503.
            log.warning("wait_interrupted", error=repr(exc))
            break
    return project


def _status_response(project: Project, *, status_code: int) -> JSONResponse:
    return JSONResponse(
        project.public_status(include_results=True),
        status_code=status_code,
        headers={"Location": f"/v1/projects/{project.id}"},
    )


@router.post(
    "",
    status_code=202,
    dependencies=[IndexesEnsured],
    responses={200: {"description": "`wait` was given and every clip is terminal"}},
)
async def create_project(
    body: CreateProjectIn,
    request: Request,
    state: State,
    tenant_id: TenantId,
    wait: Annotated[float, Query(ge=0, le=120, description="seconds to wait for clips")] = 0,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Create a project: one Runware task per scene. ``wait`` returns finished clips at once."""
    request_id = request.headers.get("x-request-id")
    result = await state.projects.create(
        _new_project(
            body,
            state,
            tenant_id,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(body),
            correlation_id=request_id,
        )
    )
    project = result.project
    with bound_context(project_id=project.id, request_id=request_id):
        if result.created:
            await _dispatch(state, project, request_id)
            log.info("project_created", clips=len(project.clips), model=project.model)
        wait_s = min(wait, state.settings.max_wait_s)
        # With too many POSTs waiting already, this one answers at once (202, clips pending).
        if wait_s > 0 and start_waiting(request):
            project = await _wait_for_terminal(state, project, wait_s)
        done = wait_s > 0 and project.counts.pending == 0
        return _status_response(project, status_code=200 if done else 202)


@router.get("/{project_id}", responses=problem_responses(404))
async def get_project(project_id: str, state: State, tenant_id: TenantId) -> dict[str, Any]:
    """The project status; its first fields are exactly the seed's ``check-clips-status``."""
    project = await state.projects.get(project_id, tenant_id=tenant_id)
    if project is None:
        raise not_found()
    return project.public_status(include_results=True)


@router.get("", response_model=ProjectList)
async def list_projects(
    state: State,
    tenant_id: TenantId,
    status: ProjectStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> ProjectList:
    """The tenant's projects, newest first, cursor-paginated."""
    projects, next_cursor = await state.projects.list(
        tenant_id, status=status, limit=limit, cursor=cursor
    )
    return ProjectList(
        items=[project.public_status(include_results=False) for project in projects],
        next_cursor=next_cursor,
    )


@router.post("/{project_id}/retry", status_code=202, responses=problem_responses(404))
async def retry_project(
    project_id: str, request: Request, state: State, tenant_id: TenantId
) -> JSONResponse:
    """Give every failed clip a new task and queue it again."""
    retried = await state.projects.retry_failed(project_id, tenant_id=tenant_id)
    if retried is None:
        raise not_found()
    project, events = retried
    await _announce(state, events)
    if retried.new_clips:
        with bound_context(project_id=project.id):
            await _dispatch(state, project, request.headers.get("x-request-id"))
            log.info("project_retried", clips=len(retried.new_clips))
    return _status_response(project, status_code=202)


@router.post("/{project_id}/cancel", status_code=202, responses=problem_responses(404))
async def cancel_project(project_id: str, state: State, tenant_id: TenantId) -> JSONResponse:
    """Stop what has not finished: every clip not yet terminal becomes ``cancelled``."""
    cancelled = await state.projects.cancel(project_id, tenant_id=tenant_id)
    if cancelled is None:
        raise not_found()
    project, events = cancelled
    await _announce(state, events)
    return _status_response(project, status_code=202)
