"""The storage interface: what reelflow needs from wherever it keeps the videos it copied."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reelflow_common.errors import TransientError

MP4 = "video/mp4"


class StorageError(TransientError):
    """The storage did not answer or refused a write; the copy is tried again later."""


@dataclass(frozen=True)
class LocalFile:
    """The api sends this file itself."""

    path: Path


@dataclass(frozen=True)
class Redirect:
    """The api redirects the client to this URL (short-lived, signed by the storage)."""

    url: str


Delivery = LocalFile | Redirect


class VideoStorage(Protocol):
    """Videos by key (``videos/<project>/<scene>/<task>.mp4``); every method may raise
    :class:`StorageError`."""

    async def put(self, key: str, source: Path, *, content_type: str = MP4) -> None:
        """Store the file ``source`` under ``key``, replacing what is there (idempotent)."""
        ...

    async def size(self, key: str) -> int | None:
        """The stored object's size in bytes; None when there is none."""
        ...

    async def delivery(self, key: str, *, download_name: str | None = None) -> Delivery | None:
        """How the api hands ``key`` to a client holding a valid signed URL; None: no object.

        ``download_name``: the client saves the video as a file of that name (a redirect's
        URL has the bucket answer so; a local file's answer says so, the api's own).
        """
        ...


def video_key(project_id: str, scene_index: int, task_uuid: str) -> str:
    """Where one task's video is kept: one object per task, so a retry never overwrites."""
    return f"videos/{project_id}/{scene_index}/{task_uuid}.mp4"
