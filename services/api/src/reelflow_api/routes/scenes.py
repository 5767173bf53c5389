"""``/v1/projects/{project_id}/scenes``: what a project asked for, scene by scene.

The status (``GET /v1/projects/{project_id}``) says how a project is going and stays small:
the notifier sends it in every snapshot. What each scene asked for (its prompt, duration,
size, ...) is here, for a client that did not create the project itself or no longer holds
the request: a reloaded page, another device. Written once when the project is created, it
never changes, so a client may keep it (``Cache-Control``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from reelflow_api.deps import State, TenantId
from reelflow_api.problems import not_found, problem_responses
from reelflow_common.store import ProjectScenesView

router = APIRouter(
    prefix="/v1/projects", tags=["projects"], responses=problem_responses(401, 422, 503)
)

#: how long a client may keep a project's scenes without asking again. They never change, but
#: the project may be deleted meanwhile: an hour, not forever. ``private``: a shared cache
#: never holds them; ``Vary: Authorization``: a browser asking with another tenant's key (the
#: dashboard signed in again) asks the API, which may answer 404.
CACHING = {"Cache-Control": "private, max-age=3600", "Vary": "Authorization"}


@router.get(
    "/{project_id}/scenes",
    response_model=ProjectScenesView,
    response_description="What each scene asked for, with the defaults it was given.",
    responses={
        200: {
            "headers": {
                "Cache-Control": {
                    "description": "`private, max-age=3600`: the scenes never change",
                    "schema": {"type": "string"},
                },
                "Vary": {
                    "description": "`Authorization`: kept per API key",
                    "schema": {"type": "string"},
                },
            }
        },
        **problem_responses(404),
    },
)
async def get_project_scenes(project_id: str, state: State, tenant_id: TenantId) -> Response:
    """What the project asked for: its title, model, and each scene's prompt, negative prompt,
    duration, size, seed and fps, with the defaults the API applied (a scene that named no
    duration, width or height shows the ones it was made with).

    For a client that did not keep the request it sent: a page reloaded, another device. It
    never changes; follow the project's progress with ``GET /v1/projects/{project_id}`` or
    over WebSocket, which do not repeat it.
    """
    view = await state.projects.scenes(project_id, tenant_id=tenant_id)
    if view is None:
        raise not_found()
    return Response(view.wire_json(), media_type="application/json", headers=CACHING)
