"""reelflow's own video URLs: signed for one key until an expiry, checked without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from reelflow_common.settings import StorageSettings, VideoLinkSettings
from reelflow_common.storage import VIDEOS_PATH, VideoLinks

KEY = "videos/p1/0/9d1c0f5e-0000-4000-8000-000000000000.mp4"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _parts(url: str) -> tuple[str, int, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.removeprefix(VIDEOS_PATH), int(query["expires"][0]), query["signature"][0]


def test_a_signed_url_is_valid_until_it_expires_and_not_after() -> None:
    clock = Clock()
    links = VideoLinks(b"secret", ttl_s=3600, clock=clock)
    key, expires, signature = _parts(links.url(KEY))
    assert key == KEY
    assert expires == int(T0.timestamp()) + 3600
    clock.now = T0 + timedelta(seconds=3599)
    assert links.check(KEY, expires=expires, signature=signature) is True
    clock.now = T0 + timedelta(seconds=3600)
    assert links.check(KEY, expires=expires, signature=signature) is None


def test_reads_a_few_seconds_apart_give_the_same_url_which_verifies_and_expires() -> None:
    clock = Clock()
    clock.now = T0 + timedelta(seconds=7)  # not on a window's boundary
    links = VideoLinks(b"secret", ttl_s=3600, clock=clock)  # a window of 900 s
    first = links.url(KEY)
    clock.now += timedelta(seconds=5)
    assert links.url(KEY) == first
    _key, expires, signature = _parts(first)
    assert expires == int(T0.timestamp()) + 3600 + 900  # rounded up to the next window
    assert links.check(KEY, expires=expires, signature=signature) is True
    clock.now = datetime.fromtimestamp(expires - 1, UTC)
    assert links.check(KEY, expires=expires, signature=signature) is True
    clock.now = datetime.fromtimestamp(expires, UTC)
    assert links.check(KEY, expires=expires, signature=signature) is None


def test_a_url_lasts_at_least_the_ttl_and_at_most_a_window_more_from_any_read() -> None:
    clock = Clock()
    links = VideoLinks(b"secret", ttl_s=3600, clock=clock)
    urls = set()
    for second in range(0, 3600, 13):
        clock.now = T0 + timedelta(seconds=second, milliseconds=250)
        url = links.url(KEY)
        urls.add(url)
        lifetime = _parts(url)[1] - clock.now.timestamp()
        assert 3600 <= lifetime <= 3600 + 900
    assert len(urls) == 4  # an hour of reads: one URL a window


def test_a_url_for_another_key_another_expiry_or_another_secret_is_refused() -> None:
    links = VideoLinks(b"secret", ttl_s=3600, clock=Clock())
    _key, expires, signature = _parts(links.url(KEY))
    assert links.check(KEY.replace("/0/", "/1/"), expires=expires, signature=signature) is False
    assert links.check(KEY, expires=expires + 86_400, signature=signature) is False
    other = VideoLinks(b"another secret", ttl_s=3600, clock=Clock())
    assert other.check(KEY, expires=expires, signature=signature) is False


def test_a_signature_with_non_ascii_characters_is_refused_not_an_error() -> None:
    links = VideoLinks(b"secret", ttl_s=3600, clock=Clock())
    _key, expires, _signature = _parts(links.url(KEY))
    assert links.check(KEY, expires=expires, signature="\u00e9") is False
    assert links.check(KEY, expires=expires, signature="\u00e9" * 64) is False


def test_urls_are_relative_unless_a_public_base_is_set() -> None:
    assert VideoLinks(b"s", ttl_s=60).url(KEY).startswith(f"{VIDEOS_PATH}videos/p1/0/")
    links = VideoLinks(b"s", ttl_s=60, base_url="https://reelflow.example.com/")
    assert links.url(KEY).startswith("https://reelflow.example.com/v1/videos/videos/p1/")


def test_links_come_from_the_settings_only_with_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFLOW_VIDEO_URL_SECRET", "from the environment")
    assert VideoLinks.from_settings(VideoLinkSettings(video_url_secret=None)) is None
    settings = VideoLinkSettings(video_url_secret=SecretStr("s"), video_url_ttl_s=60)
    assert VideoLinks.from_settings(settings) is not None


def test_storage_settings_refuse_a_backend_without_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REELFLOW_VIDEO_URL_SECRET", "from the environment")
    with pytest.raises(ValidationError, match="video_url_secret"):
        StorageSettings(storage_backend="local", video_url_secret=None)
    with pytest.raises(ValidationError, match="s3_bucket"):
        StorageSettings(storage_backend="s3", video_url_secret=SecretStr("s"))
    assert not StorageSettings(storage_backend="none").copies_enabled
