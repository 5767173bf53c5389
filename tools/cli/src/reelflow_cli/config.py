"""Where the server is and which key to use: the environment, else a config file.

``REELFLOW_URL`` and ``REELFLOW_API_KEY`` win; otherwise ``url`` and ``api_key``
from the TOML file at ``REELFLOW_CONFIG``, or ``$XDG_CONFIG_HOME/reelflow/config.toml``
(``~/.config/reelflow/config.toml``)::

    url = "http://127.0.0.1:8000"
    api_key = "rf_…"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from reelflow_cli.errors import BadArgument, Unauthorized

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str | None
    #: the config file that was (or would have been) read
    path: Path


def config_path(env: Mapping[str, str]) -> Path:
    if explicit := env.get("REELFLOW_CONFIG"):
        return Path(explicit)
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "reelflow" / "config.toml"


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = config_path(env)
    values: dict[str, object] = {}
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadArgument(f"cannot read the config file {path}: {exc}") from exc
    if url := env.get("REELFLOW_URL"):
        _check_url(url, "REELFLOW_URL")
    elif url := _text(values, "url", path):
        _check_url(url, f"url in {path}")
    else:
        url = DEFAULT_URL
    key = env.get("REELFLOW_API_KEY") or _text(values, "api_key", path)
    return Config(url=url.rstrip("/"), api_key=key, path=path)


def _check_url(url: str, named: str) -> None:
    """A ``BadArgument`` (exit 2) for a server URL that is none: no http or https scheme, or
    no host; the server cannot be reached at it, but the fix is the setting, not the server."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is no number raises)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed IPv6 bracket, a port out of range
        usable = False
    if not usable:
        raise BadArgument(
            f"{named} is {url!r}, not a server URL: it must look like http://HOST:PORT or"
            f" https://HOST (the default is {DEFAULT_URL})"
        )


def require_key(config: Config) -> str:
    if not config.api_key:
        raise Unauthorized(f"no API key: set REELFLOW_API_KEY, or api_key in {config.path}")
    return config.api_key


def _text(values: Mapping[str, object], name: str, path: Path) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadArgument(f"{path}: {name} must be a string")
    return value
