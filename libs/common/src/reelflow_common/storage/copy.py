"""Copying one video from Runware's URL into reelflow's storage, checked on the way."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from reelflow_common.storage.base import MP4, StorageError, VideoStorage

#: an ISO base media file (MP4) begins with a box whose type, at bytes 4-8, is ``ftyp``
_MP4_BRAND_AT = slice(4, 8)
_MP4_BRAND = b"ftyp"
#: answers of a link that will not come back: Runware's URL lifetime is over
_GONE = frozenset({403, 404, 410})


class CopyFailed(Exception):
    """A copy did not land; ``code`` says why, ``retryable`` whether trying again may help."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class CopiedVideo:
    """A video as it was stored."""

    key: str
    size_bytes: int
    sha256: str | None
    content_type: str = MP4


def check_mp4_head(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like an MP4."""
    return len(head) >= 8 and head[_MP4_BRAND_AT] == _MP4_BRAND


class VideoCopier:
    """Downloads a video to a temporary file (size-bounded, MP4-checked), then stores it."""

    def __init__(self, http: httpx.AsyncClient, storage: VideoStorage, *, max_bytes: int) -> None:
        self._http = http
        self._storage = storage
        self._max_bytes = max_bytes

    @property
    def storage(self) -> VideoStorage:
        return self._storage

    async def copy(self, url: str, key: str) -> CopiedVideo:
        """Copy ``url`` to ``key``. Raises :class:`CopyFailed`."""
        with tempfile.TemporaryDirectory(prefix="reelflow-copy-") as tmp:
            path = Path(tmp) / "video.mp4"
            size, digest = await self._download(url, path)
            try:
                await self._storage.put(key, path, content_type=MP4)
            except StorageError as exc:
                raise CopyFailed("storageUnavailable", str(exc), retryable=True) from exc
        return CopiedVideo(key=key, size_bytes=size, sha256=digest)

    async def _download(self, url: str, path: Path) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code in _GONE:
                    raise CopyFailed(
                        "providerLinkExpired",
                        f"Runware's video URL answers {response.status_code}: it has expired"
                        " or never existed; the video cannot be copied any more",
                        retryable=False,
                    )
                if response.status_code != 200:
                    raise CopyFailed(
                        "providerUnavailable",
                        f"Runware's video URL answered {response.status_code}",
                        retryable=True,
                    )
                declared = _content_length(response)
                if declared is not None and declared > self._max_bytes:
                    raise _too_large(declared, self._max_bytes)
                with path.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self._max_bytes:
                            raise _too_large(size, self._max_bytes)
                        if len(head) < 8:
                            head += chunk[: 8 - len(head)]
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise CopyFailed(
                "providerUnavailable", f"downloading the video failed: {exc}", retryable=True
            ) from exc
        if declared is not None and size != declared:
            raise CopyFailed(
                "sizeMismatch",
                f"the download has {size} bytes where Runware announced {declared}",
                retryable=True,
            )
        if not check_mp4_head(head):
            raise CopyFailed(
                "notMp4", "the file at Runware's video URL is not an MP4", retryable=False
            )
        return size, digest.hexdigest()


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None or not raw.isdigit() or "content-encoding" in response.headers:
        return None  # a compressed body's length says nothing of the file's
    return int(raw)


def _too_large(size: int, limit: int) -> CopyFailed:
    return CopyFailed(
        "videoTooLarge",
        f"the video has at least {size} bytes, more than video_max_bytes ({limit})",
        retryable=False,
    )
