"""Copying one video from Runware's URL into reelflow's storage, checked on the way."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from reelflow_common.storage.base import MP4, StorageError, VideoStorage

#: an ISO base media file (MP4) begins with a box whose type, at bytes 4-8, is ``ftyp``
_MP4_BRAND_AT = slice(4, 8)
_MP4_BRAND = b"ftyp"
#: answers of a link that will not come back (Runware's URL lifetime is over), or not yet:
#: right after a task ends, its CDN may not serve the video everywhere
_GONE = frozenset({403, 404, 410})
#: redirects followed by one download, each checked like the first URL
MAX_REDIRECTS = 5
_SCHEMES = frozenset({"http", "https"})


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
    """Downloads a video to a temporary file (size-bounded, MP4-checked), then stores it.

    ``timeout_s`` bounds a whole copy (download and upload): httpx's own timeout is per
    socket operation, so a server trickling bytes would hold a copy forever.
    ``gone_retries``: the first attempts on which a 403/404/410 is tried again.
    ``allowed_hosts``: host suffixes the URL and every redirect must be under (empty: any);
    http and https only, whatever the list.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        storage: VideoStorage,
        *,
        max_bytes: int,
        timeout_s: float | None = None,
        gone_retries: int = 0,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._http = http
        self._storage = storage
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._gone_retries = gone_retries
        self._allowed = tuple(host.strip(".").lower() for host in allowed_hosts)

    @property
    def storage(self) -> VideoStorage:
        return self._storage

    async def copy(self, url: str, key: str, *, attempt: int = 1) -> CopiedVideo:
        """Copy ``url`` to ``key`` (``attempt`` 1: the first try). Raises :class:`CopyFailed`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._copy(url, key, attempt)
        except TimeoutError as exc:
            raise CopyFailed(
                "copyTimedOut",
                f"the copy took longer than copy_timeout_s ({self._timeout_s})",
                retryable=True,
            ) from exc

    async def _copy(self, url: str, key: str, attempt: int) -> CopiedVideo:
        with tempfile.TemporaryDirectory(prefix="reelflow-copy-") as tmp:
            path = Path(tmp) / "video.mp4"
            size, digest = await self._download(url, path, attempt)
            try:
                await self._storage.put(key, path, content_type=MP4)
            except StorageError as exc:
                raise CopyFailed("storageUnavailable", str(exc), retryable=True) from exc
        return CopiedVideo(key=key, size_bytes=size, sha256=digest)

    async def _download(self, url: str, path: Path, attempt: int) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            response = await self._get(url)
            try:
                if response.status_code in _GONE and attempt <= self._gone_retries:
                    raise CopyFailed(
                        "providerLinkExpired",
                        f"Runware's video URL answers {response.status_code}: not served yet,"
                        f" or expired; tried again (attempt {attempt} of {self._gone_retries}"
                        " that may)",
                        retryable=True,
                    )
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
            finally:
                await response.aclose()
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

    async def _get(self, url: str) -> httpx.Response:
        """A streamed GET of ``url``, following redirects only to allowed URLs (SSRF)."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            request = self._http.build_request("GET", url)
            response = await self._http.send(request, stream=True, follow_redirects=False)
            if response.next_request is None:
                return response
            await response.aclose()
            url = str(response.next_request.url)
        raise CopyFailed(
            "tooManyRedirects",
            f"Runware's video URL redirects more than {MAX_REDIRECTS} times",
            retryable=False,
        )

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        allowed = not self._allowed or any(
            host == suffix or host.endswith(f".{suffix}") for suffix in self._allowed
        )
        if parts.scheme not in _SCHEMES or not host or not allowed:
            raise CopyFailed(
                "urlNotAllowed",
                f"the video URL {parts.scheme}://{host} is not http(s) under"
                " video_copy_allowed_hosts; not fetched",
                retryable=False,
            )


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
