"""``/v1/videos/{key}``: reelflow's own copies of the videos, behind signed, expiring URLs.

No API key: a ``<video>`` element cannot send one. The signature (``storage.links``)
is the permission, for one video until ``expires``. A local file is sent with
range support; an S3 object is a redirect to a presigned URL of the private bucket.

``?download=1`` answers it as a file to save (``Content-Disposition: attachment``): a
browser ignores ``<a download>`` on another origin's link. The signature does not cover
it, and need not: whoever holds the link may fetch the video anyway, and the file's name
is made of the signed key's scene number and task UUID only, never of the request's text.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from reelflow_api.deps import State
from reelflow_api.problems import Problem, not_found, problem_responses
from reelflow_common.storage import MP4, LocalFile

router = APIRouter(prefix="/v1/videos", tags=["videos"], responses=problem_responses(422, 503))

#: a key as ``storage.video_key`` makes it: ``videos/<project>/<scene>/<task>.mp4``
_KEY = re.compile(r"videos/[^/]+/(?P<scene>[0-9]{1,5})/(?P<task>[^/]+)\.mp4")
#: the file extension of each type a stored video has: the copy checks an MP4 and stores it as
#: one (``storage.copy``), and it is sent as one
_EXTENSIONS = {MP4: ".mp4"}
#: the saved file's name when the key is not one reelflow makes (the file is still the video)
_SOME_VIDEO = "video"


def download_name(key: str, media_type: str = MP4) -> str:
    """``scene-NN-<task UUID>.mp4``, as ``reelflow download`` names the file: only a scene
    number and a task UUID in its canonical form from the key, nothing else of its text."""
    extension = _EXTENSIONS[media_type]
    found = _KEY.fullmatch(key)
    if found is None:
        return f"{_SOME_VIDEO}{extension}"
    try:
        task = uuid.UUID(found["task"])
    except ValueError:
        return f"{_SOME_VIDEO}{extension}"
    return f"scene-{int(found['scene']):02d}-{task}{extension}"


@router.get(
    "/{key:path}",
    responses={
        200: {
            "content": {MP4: {"schema": {"type": "string", "format": "binary"}}},
            "description": "the video (local storage)",
            "headers": {
                "Content-Disposition": {
                    "description": 'with `download`: `attachment; filename="scene-NN-<task_uuid>'
                    '.mp4"` (absent without it); the bucket answers so after a 307 too',
                    "schema": {"type": "string"},
                }
            },
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
    download: Annotated[
        bool,
        Query(
            description="a yes (`1`, `true`, `t`, `yes`, `y`, `on`, in any case): to save, not"
            ' to play (`Content-Disposition: attachment; filename="scene-NN-<task_uuid>.mp4"`);'
            " a no (`0`, `false`, `f`, `no`, `n`, `off`): to play; not part of the signature"
        ),
    ] = False,
) -> Response:
    """A stored video, for a URL reelflow signed (``stored_url`` of a clip); with
    ``download``, as a file to save."""
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
    name = download_name(key) if download else None
    delivery = await state.storage.delivery(key, download_name=name)
    if delivery is None:
        raise not_found("video")
    if isinstance(delivery, LocalFile):
        return FileResponse(
            delivery.path,
            media_type=MP4,
            headers={"Cache-Control": "private"},
            filename=name,
            content_disposition_type="attachment",
        )
    return RedirectResponse(delivery.url, status_code=307)


# HEAD as well (players and downloaders ask for the size first); one operation in the schema.
router.add_api_route(
    "/{key:path}", get_video, methods=["HEAD"], include_in_schema=False, response_class=Response
)
