"""Conditional GETs of a project's status: an ``ETag``, and ``304 Not Modified`` for a client
that has that status already (``If-None-Match``), so that polling costs no body.

The tag is a digest of the body itself, not of the project's ``seq``: ``seq`` counts
events, and some visible changes have none (an attempt's history: a task that was never
submitted failed, an earlier task reached Runware, in ``transitions.follows``); a
``stored_url`` changes with its expiry's window (``storage.links``) without any. Weak
(``W/``): a proxy that compresses the body keeps a weak tag as it is, and the answer means
the same compressed or not.

``Cache-Control: private, no-cache``: a browser may keep the status and must ask again
before each use, so its own cache sends ``If-None-Match`` and hands the page the kept
body on a 304 (a ``fetch`` with no code for it); no shared cache keeps one tenant's status.
"""

from __future__ import annotations

import hashlib

from fastapi.responses import Response

#: on a project status and on its 304
CACHE_CONTROL = "private, no-cache"

#: the headers of a status that may be revalidated, and of its 304 (the OpenAPI document's)
REVALIDATED_HEADERS = {
    "ETag": {
        "description": "the status's entity tag (weak): send it as `If-None-Match` to get a 304"
        " while the status is the same",
        "schema": {"type": "string"},
    },
    "Cache-Control": {"description": CACHE_CONTROL, "schema": {"type": "string"}},
}


def etag_of(body: bytes) -> str:
    """The weak entity tag of ``body``: 128 bits of its SHA-256."""
    return f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (the weak comparison), or is ``*``."""
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or _opaque(etag) in {_opaque(tag) for tag in tags}


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def revalidated(response: Response, if_none_match: str | None) -> Response:
    """``response`` (a 200) with its ETag and caching, or a 304 with the same headers and no
    body when the client's ``If-None-Match`` names that ETag."""
    etag = etag_of(bytes(response.body))
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response
