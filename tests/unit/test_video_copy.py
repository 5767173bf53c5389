"""The copy of one video: size bound, MP4 signature, announced length, expired links.

Runware's side is an ``httpx.MockTransport``; the storage a local directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from reelflow_common.storage import CopyFailed, LocalStorage, VideoCopier, check_mp4_head

SAMPLE = files("reelflow_runware_sim").joinpath("assets/sample.mp4").read_bytes()
URL = "https://cdn.example/video/v.mp4"
KEY = "videos/p/0/t.mp4"


def _copier(
    tmp_path: Path, answer: Callable[[httpx.Request], httpx.Response], *, max_bytes: int = 1 << 20
) -> VideoCopier:
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return VideoCopier(http, LocalStorage(tmp_path), max_bytes=max_bytes)


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
