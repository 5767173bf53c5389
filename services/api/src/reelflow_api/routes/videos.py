"""``/v1/videos/{key}``: reelflow's own copies of the videos, behind signed, expiring URLs.

No API key: a ``<video>`` element cannot send one. The signature (``storage.links``)
is the permission, for one video until ``expires``. A local file is sent with
range support; an S3 object is a redirect to a presigned URL of the private bucket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from reelflow_api.deps import State
from reelflow_api.problems import Problem, not_found, problem_responses
from reelflow_common.storage import MP4, LocalFile

router = APIRouter(prefix="/v1/videos", tags=["videos"], responses=problem_responses(422, 503))


@router.get(
    "/{key:path}",
    responses={
        200: {
            "content": {MP4: {"schema": {"type": "string", "format": "binary"}}},
            "description": "the video (local storage)",
        },
        307: {"description": "to a short-lived URL of the bucket (S3 storage)"},
        **problem_responses(403, 404, 410),
    },
    response_class=Response,
)
async def get_video(
    key: str,
    state: State,
    expires: Annotated[int, Query(ge=0, description="when the link expires (Unix seconds)")],
    signature: Annotated[str, Query(min_length=1, max_length=128)],
) -> Response:
    """A stored video, for a URL reelflow signed (``stored_url`` of a clip)."""
    if state.links is None or state.storage is None:
        raise not_found("video: reelflow keeps no copies of videos here")
    valid = state.links.check(key, expires=expires, signature=signature)
    if valid is False:
        raise Problem(403, "Forbidden", "This video URL's signature is not valid.")
    if valid is None:
        raise Problem(
            410,
            "Gone",
            "This video URL has expired; the project's status has a fresh stored_url.",
        )
    delivery = await state.storage.delivery(key)
    if delivery is None:
        raise not_found("video")
    if isinstance(delivery, LocalFile):
        return FileResponse(delivery.path, media_type=MP4, headers={"Cache-Control": "private"})
    return RedirectResponse(delivery.url, status_code=307)


# HEAD as well (players and downloaders ask for the size first); one operation in the schema.
router.add_api_route(
    "/{key:path}", get_video, methods=["HEAD"], include_in_schema=False, response_class=Response
)
