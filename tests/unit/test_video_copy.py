"""The copy of one video: size bound, MP4 signature, announced length, expired links.

Runware's side is an ``httpx.MockTransport``; the storage a local directory. Where the
connections go: ``test_video_copy_connections.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from botocore.exceptions import NoCredentialsError

from reelflow_common.storage import CopyFailed, LocalStorage, VideoCopier, check_mp4_head
from reelflow_common.storage.base import StorageError
from reelflow_common.storage.copy import MAX_REDIRECTS
from reelflow_common.storage.s3 import S3Storage

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
from tests.waiting import DEADLINE_S

SAMPLE = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()
URL = "https://cdn.example/video/v.mp4"
KEY = "videos/p/0/t.mp4"


#: where every host of these tests resolves (any public address: the mock connects nowhere)
PUBLIC_ADDRESS = "8.8.8.8"


async def _public(_host: str, _port: int) -> list[str]:
    return [PUBLIC_ADDRESS]


def _copier(
    tmp_path: Path,
    answer: Callable[[httpx.Request], httpx.Response],
    *,
    max_bytes: int = 1 << 20,
    **options: Any,
) -> VideoCopier:
    options.setdefault("resolve", _public)
    return VideoCopier(
        LocalStorage(tmp_path),
        max_bytes=max_bytes,
        transport=httpx.MockTransport(answer),
        **options,
    )


async def test_a_valid_mp4_is_stored_with_its_size_and_checksum(tmp_path: Path) -> None:
    copier = _copier(tmp_path, lambda _: httpx.Response(200, content=SAMPLE))
    copied = await copier.copy(URL, KEY)
    assert (tmp_path / KEY).read_bytes() == SAMPLE
    assert copied.size_bytes == len(SAMPLE)
    assert copied.sha256 is not None
    assert len(copied.sha256) == 64
    assert await copier.storage.size(KEY) == len(SAMPLE)


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_an_expired_link_fails_for_good_with_a_clear_code(
    tmp_path: Path, status: int
) -> None:
    copier = _copier(tmp_path, lambda _: httpx.Response(status, text="gone"))
    with pytest.raises(CopyFailed) as failed:
        await copier.copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("providerLinkExpired", False)
    assert "expired" in str(failed.value)
    assert not (tmp_path / KEY).exists()


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_a_link_not_served_yet_is_tried_again_on_the_first_attempts(
    tmp_path: Path, status: int
) -> None:
    copier = _copier(tmp_path, lambda _: httpx.Response(status, text="gone"), gone_retries=2)
    for attempt, retryable in ((1, True), (2, True), (3, False)):
        with pytest.raises(CopyFailed) as failed:
            await copier.copy(URL, KEY, attempt=attempt)
        assert (failed.value.code, failed.value.retryable) == ("providerLinkExpired", retryable)


async def test_a_copy_that_trickles_past_its_deadline_is_worth_another_try(
    tmp_path: Path,
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield SAMPLE[:8]
        while True:  # a byte now and then: no socket timeout ever fires
            await asyncio.sleep(0.01)
            yield b"\x00"

    copier = _copier(tmp_path, lambda _: httpx.Response(200, content=trickle()), timeout_s=0.2)
    with pytest.raises(CopyFailed) as failed:
        await asyncio.wait_for(copier.copy(URL, KEY), DEADLINE_S)
    assert (failed.value.code, failed.value.retryable) == ("copyTimedOut", True)
    assert not (tmp_path / KEY).exists()


async def test_a_server_error_or_a_cut_connection_is_worth_another_try(tmp_path: Path) -> None:
    copier = _copier(tmp_path, lambda _: httpx.Response(503))
    with pytest.raises(CopyFailed) as failed:
        await copier.copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("providerUnavailable", True)

    def cut(_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, cut).copy(URL, KEY)
    assert failed.value.retryable


async def test_a_body_shorter_than_announced_is_a_corrupted_download(tmp_path: Path) -> None:
    def truncated(_request: httpx.Request) -> httpx.Response:
        headers = {"content-length": str(len(SAMPLE) + 100)}
        return httpx.Response(200, headers=headers, content=SAMPLE)

    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, truncated).copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("sizeMismatch", True)
    assert not (tmp_path / KEY).exists()


async def test_a_file_that_is_no_mp4_is_refused(tmp_path: Path) -> None:
    copier = _copier(tmp_path, lambda _: httpx.Response(200, text="<html>Access denied</html>"))
    with pytest.raises(CopyFailed) as failed:
        await copier.copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("notMp4", False)


async def test_a_video_over_the_bound_is_refused_by_header_or_while_streaming(
    tmp_path: Path,
) -> None:
    too_big = _copier(tmp_path, lambda _: httpx.Response(200, content=SAMPLE), max_bytes=1024)
    with pytest.raises(CopyFailed) as failed:
        await too_big.copy(URL, KEY)
    assert failed.value.code == "videoTooLarge"

    async def chunks() -> AsyncIterator[bytes]:
        yield SAMPLE[:1000]
        yield SAMPLE[1000:]

    def unannounced(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())  # no Content-Length: chunked

    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, unannounced, max_bytes=1024).copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("videoTooLarge", False)


def test_the_mp4_signature_is_the_ftyp_box() -> None:
    assert check_mp4_head(SAMPLE[:8])
    assert not check_mp4_head(b"\x00\x00\x00\x18ftu")
    assert not check_mp4_head(b"GIF89a\x00\x00")


def test_local_storage_never_leaves_its_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        LocalStorage(tmp_path).path("../etc/passwd")


async def test_two_puts_of_one_key_at_once_both_land_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both writes finish their temporary file before either renames it: the worst overlap.
    both_written = threading.Barrier(2, timeout=10)
    copyfile = shutil.copyfile

    def copy_then_wait(source: Path, target: Path) -> None:
        copyfile(source, target)
        both_written.wait()

    monkeypatch.setattr(shutil, "copyfile", copy_then_wait)
    storage = LocalStorage(tmp_path / "store")
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(SAMPLE)
    second.write_bytes(SAMPLE[:-1])
    await asyncio.gather(storage.put(KEY, first), storage.put(KEY, second))
    assert storage.path(KEY).read_bytes() in (SAMPLE, SAMPLE[:-1])
    assert [p.name for p in storage.path(KEY).parent.iterdir()] == ["t.mp4"]


def _redirects(*hops: str) -> Callable[[httpx.Request], httpx.Response]:
    """A CDN that sends URL ``i`` on to ``hops[i]``, then answers the video."""
    chain = [URL, *hops]

    def answer(request: httpx.Request) -> httpx.Response:
        at = chain.index(str(request.url))
        if at + 1 < len(chain):
            return httpx.Response(302, headers={"location": chain[at + 1]})
        return httpx.Response(200, content=SAMPLE)

    return answer


async def test_a_video_is_fetched_only_from_allowed_hosts_and_redirects(tmp_path: Path) -> None:
    allowed: dict[str, Any] = {"allowed_hosts": ["example", "runware.ai"]}
    ok = _copier(tmp_path, _redirects("https://im.runware.ai/v.mp4"), **allowed)
    assert (await ok.copy(URL, KEY)).size_bytes == len(SAMPLE)
    for hops in (
        ["https://169.254.169.254/latest/meta-data"],
        ["https://im.runware.ai/a", "https://evilrunware.ai/v.mp4"],
        ["file:///etc/passwd"],
    ):
        copier = _copier(tmp_path / "refused", _redirects(*hops), **allowed)
        with pytest.raises(CopyFailed) as failed:
            await copier.copy(URL, KEY)
        assert (failed.value.code, failed.value.retryable) == ("urlNotAllowed", False), hops
    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, _redirects(), **allowed).copy("ftp://im.runware.ai/v.mp4", KEY)
    assert failed.value.code == "urlNotAllowed"
    assert not (tmp_path / "refused").exists()


async def test_plain_http_is_refused_and_so_is_a_redirect_to_it_unless_allowed(
    tmp_path: Path,
) -> None:
    for url, hops in (("http://cdn.example/v.mp4", []), (URL, ["http://cdn.example/v.mp4"])):
        cdn = _Counting(_redirects(*hops) if url == URL else _video)
        with pytest.raises(CopyFailed) as failed:
            await _copier(tmp_path / "refused", cdn).copy(url, KEY)
        assert (failed.value.code, failed.value.retryable) == ("urlNotAllowed", False), url
        assert "not https" in str(failed.value)
        assert cdn.asked == ([] if url != URL else [URL])  # never the http one
    assert not (tmp_path / "refused").exists()

    downgraded = _copier(tmp_path, _redirects("http://cdn.example/v.mp4"), allow_http=True)
    assert (await downgraded.copy(URL, KEY)).size_bytes == len(SAMPLE)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        # IPv6 addresses that lead to an internal IPv4 address, or to an internal network
        "64:ff9b::a9fe:a9fe",  # NAT64 (well-known prefix) to 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # NAT64's local-use prefix: never public
        "64:ff9b:1::808:808",
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
        "2001:0:a9fe:a9fe::1",  # Teredo, its server at 169.254.169.254
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, its client at 10.0.0.1
        "fec0::1",  # site-local
    ],
)
async def test_a_host_that_resolves_to_a_private_address_is_refused_unless_internal(
    tmp_path: Path, address: str
) -> None:
    async def internal(_host: str, _port: int) -> list[str]:
        return [PUBLIC_ADDRESS, address]  # one bad address is enough

    refusing: list[dict[str, Any]] = [
        {},  # any host
        {"allowed_hosts": ["example"]},  # the host under an allowed suffix
        {"allowed_hosts": ["cdn.example"]},  # the host allowed itself
        {"internal_hosts": ["example"]},  # internal hosts are whole names, not suffixes
    ]
    for options in refusing:
        cdn = _Counting(_video)
        copier = _copier(tmp_path, cdn, resolve=internal, **options)
        with pytest.raises(CopyFailed) as failed:
            await copier.copy(URL, KEY)
        assert (failed.value.code, failed.value.retryable) == ("urlNotAllowed", False), options
        assert f"resolves to {address}" in str(failed.value)
        assert cdn.asked == []

    listed = _copier(tmp_path, _video, resolve=internal, internal_hosts=["cdn.example"])
    assert (await listed.copy(URL, KEY)).size_bytes == len(SAMPLE)


async def test_runwares_own_domain_is_allowed_but_not_internal(tmp_path: Path) -> None:
    """The default allow-list names runware.ai: its addresses must still be public."""

    async def metadata(_host: str, _port: int) -> list[str]:
        return ["169.254.169.254"]

    copier = _copier(tmp_path, _video, resolve=metadata, allowed_hosts=["runware.ai"])
    with pytest.raises(CopyFailed) as failed:
        await copier.copy("https://runware.ai/v.mp4", KEY)
    assert failed.value.code == "urlNotAllowed"
    assert "video_copy_internal_hosts" in str(failed.value)


@pytest.mark.parametrize(
    "address",
    [
        "2606:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped
        "64:ff9b::808:808",  # NAT64 (an IPv6-only network's way to IPv4 hosts)
        "2002:808:808::1",  # 6to4
    ],
)
async def test_a_host_at_a_public_address_or_one_that_leads_to_one_is_fetched(
    tmp_path: Path, address: str
) -> None:
    async def public(_host: str, _port: int) -> list[str]:
        return [address]

    assert (await _copier(tmp_path, _video, resolve=public).copy(URL, KEY)).size_bytes == len(
        SAMPLE
    )


async def test_a_host_that_does_not_resolve_is_worth_another_try(tmp_path: Path) -> None:
    async def no_answer(host: str, _port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, f"temporary failure resolving {host}")

    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, _video, resolve=no_answer).copy(URL, KEY)
    assert (failed.value.code, failed.value.retryable) == ("providerUnavailable", True)


@pytest.mark.parametrize("url", ["https://[::1/v.mp4", "https://cdn.example:99999/v.mp4"])
async def test_a_url_that_is_no_url_is_refused_not_raised(tmp_path: Path, url: str) -> None:
    with pytest.raises(CopyFailed) as failed:
        await _copier(tmp_path, _video).copy(url, KEY)
    assert (failed.value.code, failed.value.retryable) == ("urlNotAllowed", False)


def _video(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=SAMPLE)


class _Counting:
    """A CDN, remembering every URL asked of it."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self._answer = answer
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(str(request.url))
        return self._answer(request)


async def test_redirects_are_followed_a_bounded_number_of_times(tmp_path: Path) -> None:
    hops = [f"https://cdn.example/{i}" for i in range(MAX_REDIRECTS)]
    assert (await _copier(tmp_path, _redirects(*hops)).copy(URL, KEY)).size_bytes == len(SAMPLE)
    looping = _copier(tmp_path, _redirects(*hops, "https://cdn.example/one-more"))
    with pytest.raises(CopyFailed) as failed:
        await looping.copy(URL, KEY)
    assert failed.value.code == "tooManyRedirects"


async def test_a_bucket_url_that_cannot_be_presigned_is_a_storage_error() -> None:
    class NoCredentials:
        async def generate_presigned_url(self, *_args: Any, **_kwargs: Any) -> str:
            raise NoCredentialsError()

    storage = S3Storage(cast("S3Client", NoCredentials()), "bucket", presign_ttl_s=60)
    with pytest.raises(StorageError, match="presign"):
        await storage.delivery(KEY)
