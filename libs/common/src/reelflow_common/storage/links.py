"""reelflow's own video URLs: ``/v1/videos/<key>?expires=<unix>&signature=<hmac>``. Pure.

An HMAC-SHA256 over the key and the expiry, with ``video_url_secret``: whoever
holds the URL may fetch that one video until it expires, without an API key (a
``<video>`` element cannot send one). The api checks it and sends the file, or
redirects to a short-lived presigned bucket URL; the bucket itself stays private.

``<key>`` is the storage key whole, as stored with the clip and signed
(``videos/<project>/<scene>/<task>.mp4``, the objects' folder in the bucket or
the directory), hence ``/v1/videos/videos/…``: not a join gone wrong, and links
already handed out name keys so, so the route takes the key as it comes.

A link is the same on every read for a while: its expiry is rounded up to a whole
multiple of a window, a quarter of the TTL (:data:`WINDOW_FRACTION`), counted from
the Unix epoch. Every read within one window, by any service that signs (the api,
the notifier, the poller), gives the same URL, so a page that reads a project again
does not change its ``<video src>`` (the player reloads, the cache misses); a link
is valid at least ``ttl_s`` from when it was read and at most a window more.

``clock`` is the database's in the services (``DbClock.now``), as every stamp is: a
link signed by the notifier or the poller, or by one api replica, is checked by
another api replica, perhaps on another machine, and services that sign within one
window sign the same URL only if they agree on the time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from urllib.parse import quote, urlencode

from reelflow_common.settings import VideoLinkSettings
from reelflow_common.store.timefmt import Clock, utcnow

VIDEOS_PATH = "/v1/videos/"
#: the window an expiry is rounded up to, as a fraction of the TTL: a link stays the same for
#: a quarter of its lifetime, and lasts at most a quarter longer than the TTL
WINDOW_FRACTION = 4


class VideoLinks:
    """Signs and checks reelflow's own video URLs."""

    def __init__(
        self,
        secret: bytes,
        *,
        ttl_s: float,
        base_url: str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        if not secret:
            raise ValueError("the video URL secret must not be empty")
        self._secret = secret
        self._ttl_s = ttl_s
        self._window_s = max(1, math.floor(ttl_s / WINDOW_FRACTION))
        self._base = (base_url or "").rstrip("/")
        self._now = clock

    @classmethod
    def from_settings(
        cls, settings: VideoLinkSettings, *, clock: Clock = utcnow
    ) -> VideoLinks | None:
        """The links of ``settings``; None when no secret is set (videos are not kept)."""
        if settings.video_url_secret is None:
            return None
        return cls(
            settings.video_url_secret.get_secret_value().encode(),
            ttl_s=settings.video_url_ttl_s,
            base_url=settings.video_public_url,
            clock=clock,
        )

    def url(self, key: str) -> str:
        """A URL of ``key`` valid for ``ttl_s`` from now and at most a window more: its expiry
        rounded up to a whole multiple of the window (whole seconds, at least 1), so that the
        URL stays the same across reads."""
        window = self._window_s
        expires = math.ceil((self._now().timestamp() + self._ttl_s) / window) * window
        query = urlencode({"expires": expires, "signature": self._sign(key, expires)})
        return f"{self._base}{VIDEOS_PATH}{quote(key)}?{query}"

    def check(self, key: str, *, expires: int, signature: str) -> bool | None:
        """True: valid; None: signed by us but expired; False: not a signature of ours."""
        # Bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
        if not hmac.compare_digest(self._sign(key, expires).encode(), signature.encode()):
            return False
        return True if self._now().timestamp() < expires else None

    def _sign(self, key: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256)
        return mac.hexdigest()
