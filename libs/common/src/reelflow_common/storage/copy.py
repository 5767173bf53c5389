"""Copying one video from Runware's URL into reelflow's storage, checked on the way."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from reelflow_common.storage.addresses import Resolve, is_public, resolve_host
from reelflow_common.storage.base import MP4, StorageError, VideoStorage
from reelflow_common.storage.pinned import PinnedAddresses, PinnedTransport

#: an ISO base media file (MP4) begins with a box whose type, at bytes 4-8, is ``ftyp``
_MP4_BRAND_AT = slice(4, 8)
_MP4_BRAND = b"ftyp"
#: answers of a link that will not come back (Runware's URL lifetime is over), or not yet:
#: right after a task ends, its CDN may not serve the video everywhere
_GONE = frozenset({403, 404, 410})
#: redirects followed by one download, each checked like the first URL
MAX_REDIRECTS = 5
#: how long one address may take to accept a connection before the host's next is tried (a
#: whole copy's deadline would pass on the first one); the TLS handshake gets as long
CONNECT_TIMEOUT_S = 10.0


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
    The URL and every redirect are checked (SSRF): https only, or http too with
    ``allow_http``; under one of ``allowed_hosts`` (host suffixes; empty: any host);
    and every address the host resolves to public, unless the host is one of
    ``internal_hosts`` (whole names: the simulator on 127.0.0.1). The download connects only to the
    addresses that were checked, in their order (:mod:`~reelflow_common.storage.pinned`);
    ``ssl_context`` checks certificates (None: httpx's default). ``transport`` replaces
    all of that connecting (tests: an ``httpx.MockTransport``). Close it with ``aclose``.
    """

    def __init__(
        self,
        storage: VideoStorage,
        *,
        max_bytes: int,
        timeout_s: float | None = None,
        gone_retries: int = 0,
        allowed_hosts: Sequence[str] = (),
        internal_hosts: Sequence[str] = (),
        allow_http: bool = False,
        resolve: Resolve = resolve_host,
        ssl_context: ssl.SSLContext | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._pinned = PinnedAddresses()
        self._http = httpx.AsyncClient(
            transport=transport or PinnedTransport(self._pinned, ssl_context=ssl_context),
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            trust_env=False,  # no proxy from the environment: it would look names up itself
        )
        self._storage = storage
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._gone_retries = gone_retries
        self._allowed = tuple(host.strip(".").lower() for host in allowed_hosts)
        self._internal = frozenset(host.strip(".").lower() for host in internal_hosts)
        self._schemes = frozenset({"https", "http"} if allow_http else {"https"})
        self._resolve = resolve

    @property
    def storage(self) -> VideoStorage:
        return self._storage

    async def aclose(self) -> None:
        """Close the connections kept open."""
        await self._http.aclose()

    async def __aenter__(self) -> VideoCopier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

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
            checked, host, addresses = await self._checked(url)
            with self._pinned.pin(host, addresses):
                response = await self._http.send(
                    self._http.build_request("GET", checked), stream=True, follow_redirects=False
                )
            if not response.has_redirect_location:
                return response
            await response.aclose()
            location = response.headers["location"]
            try:
                url = str(checked.join(location))
            except httpx.InvalidURL:
                raise _not_allowed(f"a redirect to {location[:200]!r}, not a valid URL") from None
        raise CopyFailed(
            "tooManyRedirects",
            f"Runware's video URL redirects more than {MAX_REDIRECTS} times",
            retryable=False,
        )

    async def _checked(self, url: str) -> tuple[httpx.URL, str, list[str]]:
        """``url`` parsed, its host (as connections name it) and the host's addresses, all
        checked; :class:`CopyFailed` if it may not be fetched."""
        parsed = _parsed(url)
        if parsed is None:
            raise _not_allowed(f"the video URL {url[:200]!r} is not a valid URL")
        host = parsed.raw_host.decode("ascii").lower()
        if parsed.scheme not in self._schemes:
            raise _not_allowed(
                f"the video URL {parsed.scheme}://{host} is not https"
                + (" (video_copy_allow_http allows http)" if parsed.scheme == "http" else "")
            )
        if not host or not self._under_allowed(host):
            raise _not_allowed(
                f"the video URL's host {host!r} is not under video_copy_allowed_hosts"
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except UnicodeError:
            raise _not_allowed(f"the video URL's host {host!r} is not a valid name") from None
        except OSError as exc:
            raise CopyFailed(
                "providerUnavailable",
                f"the video URL's host {host!r} did not resolve: {exc}",
                retryable=True,
            ) from exc
        if not addresses:
            raise CopyFailed(
                "providerUnavailable",
                f"the video URL's host {host!r} has no address",
                retryable=True,
            )
        private = [address for address in addresses if not is_public(address)]
        if private and host not in self._internal:
            raise _not_allowed(
                f"the video URL's host {host!r} resolves to {private[0]}, not a public address,"
                " and is not in video_copy_internal_hosts"
            )
        return parsed, host, addresses

    def _under_allowed(self, host: str) -> bool:
        return not self._allowed or any(
            host == suffix or host.endswith(f".{suffix}") for suffix in self._allowed
        )


def _parsed(url: str) -> httpx.URL | None:
    """``url`` parsed, with an ASCII host and a port that exists; None: it is no such URL."""
    try:
        parsed = httpx.URL(url)
        parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        return None
    return parsed if 0 < (parsed.port or 443) < 65536 else None


def _not_allowed(why: str) -> CopyFailed:
    return CopyFailed("urlNotAllowed", f"{why}; not fetched", retryable=False)


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
