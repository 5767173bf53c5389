"""The dashboard: static files at ``/`` and ``/static``, and ``GET /v1/config`` for clients.

No build step: the page is plain JavaScript modules and CSS inside this package.
``/v1/config`` tells a client where the notifier is and what a project may hold (each
known model's rules too), so neither the page nor the CLI hard-codes a URL or a limit.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import annotated_types
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from reelflow_api.deps import State
from reelflow_api.schemas import CreateProjectIn, SceneIn
from reelflow_api.settings import Settings
from reelflow_api.web import FilesWithHeaders
from reelflow_common.runware.catalogue import MODEL_RULES, ModelRules, default_duration

STATIC_DIR = Path(str(files("reelflow_api") / "static"))
#: the notifier's default port: where ``make run`` puts it
DEFAULT_NOTIFIER_PORT = 8001

#: on every dashboard file; revalidated (ETag) so a new version shows on reload (nosniff
#: and no-referrer come with every answer: ``reelflow_api.web.SecurityHeaders``)
_FILE_HEADERS = {"Cache-Control": "no-cache"}

router = APIRouter()


class Defaults(BaseModel):
    model: str
    duration: float
    width: int
    height: int


class Limits(BaseModel):
    scenes: int
    title_chars: int
    prompt_chars: int
    prompt_min_chars: int = Field(
        description="a prompt must have at least this many characters besides whitespace"
    )
    duration_min_exclusive: float = Field(
        description="a scene's duration must be more than this many seconds"
    )
    duration_max: float
    size_min: int
    size_max: int
    size_step: int


class Size(BaseModel):
    width: int
    height: int


class ModelLimits(BaseModel):
    """What a scene of one model may ask for, as the API checks it (a ``422`` with ``allowed``
    otherwise); within ``limits``, which apply to every model."""

    durations: list[float] | None = Field(
        description="the only durations (s) the model makes; null: any within limits"
    )
    default_duration: float = Field(description="a scene's duration when it names none")
    sizes: list[Size] | None = Field(
        description="the only width x height pairs it makes; null: any within limits"
    )
    fps: list[int] = Field(description="the only fps values it takes; empty: a scene sets no fps")
    seed: bool = Field(description="whether a scene may set a seed")
    negative_prompt: bool = Field(description="whether a scene may set a negative_prompt")


class ClientConfig(BaseModel):
    """Where the notifier is, and a project's defaults and limits (the API's own)."""

    ws_url: str = Field(
        description="the notifier's origin: connect to {ws_url}/v1/ws?ticket=…",
        examples=["wss://reelflow.example.com"],
    )
    defaults: Defaults
    limits: Limits
    models: dict[str, ModelLimits] = Field(
        description="by Runware model (AIR id): the models whose rules the API checks; any"
        " other model is sent as it is, and Runware judges its scenes"
    )


@router.get("/v1/config", response_model=ClientConfig, tags=["clients"])
async def client_config(request: Request, state: State) -> ClientConfig:
    """Where the WebSocket is, and a project's defaults and limits (no API key needed)."""
    settings = state.settings
    return ClientConfig(
        ws_url=ws_url(request, settings),
        defaults=Defaults(
            model=settings.default_model,
            duration=settings.default_duration,
            width=settings.default_width,
            height=settings.default_height,
        ),
        limits=_LIMITS,
        models={
            model: model_limits(model, rules, settings.default_duration)
            for model, rules in MODEL_RULES.items()
        },
    )


def model_limits(model: str, rules: ModelRules, configured_duration: float) -> ModelLimits:
    """``rules`` as a client reads them (the catalogue's, which the API checks scenes with)."""
    return ModelLimits(
        durations=None if rules.durations is None else list(rules.durations),
        default_duration=default_duration(model, configured_duration),
        sizes=None if rules.sizes is None else [Size(width=w, height=h) for w, h in rules.sizes],
        fps=list(rules.fps),
        seed=rules.accepts_seed,
        negative_prompt=rules.accepts_negative_prompt,
    )


@router.get("/", include_in_schema=False)
async def dashboard(request: Request, state: State) -> Response:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers=_FILE_HEADERS | page_security_headers(ws_url(request, state.settings)),
    )


class DashboardFiles(FilesWithHeaders):
    """``/static``: the dashboard's modules, styles and icon, with its headers."""

    def __init__(self) -> None:
        super().__init__(STATIC_DIR, _FILE_HEADERS)


#: a DNS name, an IPv4 address, or an IPv6 address (as ``URL.hostname`` gives it: no brackets)
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|[0-9A-Fa-f:.]{2,45}")


def ws_url(request: Request, settings: Settings) -> str:
    """``public_ws_url``, or else the notifier's default port on the host the page came from."""
    if settings.public_ws_url:
        return settings.public_ws_url
    scheme = "wss" if request.url.scheme == "https" else "ws"
    host = request.url.hostname or ""
    if not _HOST_NAME.fullmatch(host):
        # The Host header goes into the page's policy: only a host name or an address may
        # (a shared cache that ignores Host could otherwise serve a policy someone wrote).
        host = "127.0.0.1"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{scheme}://{host}:{DEFAULT_NOTIFIER_PORT}"


def page_security_headers(ws_origin: str) -> dict[str, str]:
    """The page may run only its own code and talk only to the API and the notifier.

    Videos are the exception: their URLs are Runware's (or the simulator's), on
    hosts the contract does not fix, so media may come from any http(s) origin;
    a video cannot run script.
    """
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src https: http:",
            f"connect-src 'self' {ws_origin}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def _bound(model: type[BaseModel], field: str, kind: type[Any]) -> Any:
    """One constraint of a field (``annotated_types.MaxLen``, ``Le``, …), read from the model."""
    for constraint in model.model_fields[field].metadata:
        if isinstance(constraint, kind):
            return constraint
    raise LookupError(f"{model.__name__}.{field} has no {kind.__name__}")


# Read from the request models, so the form's limits are the ones the API enforces.
_LIMITS = Limits(
    scenes=_bound(CreateProjectIn, "scenes", annotated_types.MaxLen).max_length,
    title_chars=_bound(CreateProjectIn, "title", annotated_types.MaxLen).max_length,
    prompt_chars=_bound(SceneIn, "prompt", annotated_types.MaxLen).max_length,
    prompt_min_chars=_bound(SceneIn, "prompt", annotated_types.MinLen).min_length,
    duration_min_exclusive=_bound(SceneIn, "duration", annotated_types.Gt).gt,
    duration_max=_bound(SceneIn, "duration", annotated_types.Le).le,
    size_min=_bound(SceneIn, "width", annotated_types.Ge).ge,
    size_max=_bound(SceneIn, "width", annotated_types.Le).le,
    size_step=_bound(SceneIn, "width", annotated_types.MultipleOf).multiple_of,
)
