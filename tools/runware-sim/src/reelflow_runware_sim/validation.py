"""Check one `videoInference` task against its model's rules, as Runware does on submit.

Both request styles are accepted loosely: the legacy top-level fields (`width`, `height`,
`frameImages`) and the newer `inputs` / `resolution` ones. Fields the simulator does not
model (`outputQuality`, `inputs`, `providerSettings`, ...) are accepted and ignored.
"""

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from .directives import DirectiveError, Directives, parse_directives
from .errors import MESSAGES, ApiError, task_error
from .models import MODELS, ModelSpec

_OUTPUT_FORMATS = ("MP4", "WEBM", "MOV")
_DELIVERY_METHODS = ("async", "sync")
MAX_RESULTS = 4


@dataclass(frozen=True)
class VideoRequest:
    """A `videoInference` task that passed validation."""

    task_uuid: str
    spec: ModelSpec
    duration: float
    resolution: str | None
    seed: int | None
    number_results: int
    include_cost: bool
    webhook_url: str | None
    audio: bool
    directives: Directives


class TaskRejected(Exception):
    """The task is invalid; `error` is what Runware would answer."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.code)
        self.error = error


def task_uuid_of(task: dict[str, Any]) -> str:
    """The task's taskUUID in canonical form; raise TaskRejected when missing or malformed."""
    value = task.get("taskUUID")
    if value is None:
        raise TaskRejected(task_error("missingTaskUUID", "taskUUID is required.", task))
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        message = "Invalid value for taskUUID parameter. It must be a UUID v4 string."
        raise TaskRejected(
            task_error("invalidTaskUUID", message, task, parameter="taskUUID")
        ) from None


def validate_video(task: dict[str, Any]) -> VideoRequest:
    """Parse a videoInference task or raise TaskRejected with Runware's error for it."""
    task_uuid = task_uuid_of(task)
    spec = _model(task)
    prompt = task.get("positivePrompt")
    if prompt is None:
        _reject(task, "missingPositivePrompt", "positivePrompt", "positivePrompt is required.")
    if not isinstance(prompt, str) or len(prompt.strip()) < 2:
        _reject(task, "invalidPositivePrompt", "positivePrompt", "Must be at least 2 characters.")
    try:
        directives = parse_directives(prompt)
    except DirectiveError as exc:
        _reject(task, "invalidSimDirective", "positivePrompt", str(exc))
    duration = _duration(task, spec)
    resolution = _size(task, spec)
    _optional_fields(task, spec)
    settings = task.get("providerSettings")
    google = settings.get("google") if isinstance(settings, dict) else None
    audio = isinstance(google, dict) and google.get("generateAudio") is True
    return VideoRequest(
        task_uuid=task_uuid,
        spec=spec,
        duration=duration,
        resolution=resolution,
        seed=task.get("seed"),
        number_results=task.get("numberResults", 1),
        include_cost=task.get("includeCost") is True,
        webhook_url=task.get("webhookURL"),
        audio=audio,
        directives=directives,
    )


def _reject(
    task: dict[str, Any], code: str, parameter: str, message: str, **extra: Any
) -> NoReturn:
    raise TaskRejected(task_error(code, message, task, parameter=parameter, **extra))


def _model(task: dict[str, Any]) -> ModelSpec:
    air = task.get("model")
    if air is None:
        _reject(task, "missingModel", "model", "model is required.")
    spec = MODELS.get(air) if isinstance(air, str) else None
    if spec is None:
        message = f"Invalid value for model parameter. Unknown model {air!r}."
        _reject(task, "invalidModel", "model", message, allowedValues=sorted(MODELS))
    return spec


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(task: dict[str, Any], spec: ModelSpec) -> float:
    duration = task.get("duration")
    if duration is None:
        _reject(task, "missingDuration", "duration", "duration is required.")
    if not _is_number(duration):
        _reject(task, "invalidDuration", "duration", "duration must be a number.", type="float")
    if spec.durations is not None and duration not in spec.durations:
        allowed = [int(d) if float(d).is_integer() else d for d in spec.durations]
        message = MESSAGES["unsupportedDuration"]
        extra = {"type": "float", "allowedValues": allowed}
        _reject(task, "unsupportedDuration", "duration", message, **extra)
    low, high = spec.duration_range
    if spec.durations is None and not low <= duration <= high:
        message = f"Invalid value for duration parameter. It must be between {low} and {high}."
        _reject(task, "invalidDuration", "duration", message, type="float", min=low, max=high)
    return float(duration)


def _size(task: dict[str, Any], spec: ModelSpec) -> str | None:
    """Check width/height or resolution; return the resolution preset the price depends on."""
    width, height, resolution = task.get("width"), task.get("height"), task.get("resolution")
    if resolution is not None:
        if width is not None or height is not None:
            message = "resolution cannot be combined with width and height."
            _reject(task, "incompatibleParameters", "resolution", message)
        if resolution not in spec.resolutions:
            message = f"Invalid value for resolution parameter for {spec.name}."
            allowed = list(spec.resolutions)
            _reject(task, "unsupportedResolution", "resolution", message, allowedValues=allowed)
        return str(resolution)
    if width is None and height is None:
        return None
    width, height = _dimension(task, "width"), _dimension(task, "height")
    if spec.dimensions is not None and (width, height) not in spec.dimensions:
        allowed = [f"{w}x{h}" for w, h in spec.dimensions]
        message = f"Invalid dimensions {width}x{height} for {spec.name}."
        _reject(task, "unsupportedDimensions", "width", message, allowedValues=allowed)
    longest = max(width, height)
    return "1080p" if longest >= 1920 else "720p" if longest >= 1280 else None


def _dimension(task: dict[str, Any], name: str) -> int:
    value = task.get(name)
    if value is None:
        _reject(task, f"missing{name.title()}", name, "width and height go together.")
    if not isinstance(value, int) or isinstance(value, bool):
        _reject(task, f"invalid{name.title()}", name, f"{name} must be an integer.")
    if not 256 <= value <= 1920 or value % 8:
        message = f"{name} must be between 256 and 1920 and a multiple of 8."
        _reject(task, f"invalid{name.title()}", name, message)
    return value


def _optional_fields(task: dict[str, Any], spec: ModelSpec) -> None:
    unsupported = f"This parameter is not supported by {spec.name}."
    seed = task.get("seed")
    if seed is not None and not spec.accepts_seed:
        _reject(task, "unsupportedParameter", "seed", unsupported)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 1):
        _reject(task, "invalidSeed", "seed", "seed must be a positive integer.")
    if "negativePrompt" in task and not spec.accepts_negative_prompt:
        _reject(task, "unsupportedParameter", "negativePrompt", unsupported)
    if "fps" in task and spec.fps is None:
        _reject(task, "unsupportedParameter", "fps", unsupported)
    if "fps" in task and spec.fps is not None and task["fps"] not in spec.fps:
        message = f"Invalid value for fps parameter for {spec.name}."
        _reject(task, "unsupportedFps", "fps", message, allowedValues=list(spec.fps))
    count = task.get("numberResults", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_RESULTS:
        message = f"numberResults must be an integer from 1 to {MAX_RESULTS}."
        _reject(task, "invalidNumberResults", "numberResults", message)
    if task.get("outputType", "URL") != "URL":
        message = "Only URL output is supported for video."
        _reject(task, "unsupportedOutputType", "outputType", message, allowedValues=["URL"])
    if task.get("outputFormat", "MP4") not in _OUTPUT_FORMATS:
        message = "Invalid value for outputFormat parameter."
        allowed = list(_OUTPUT_FORMATS)
        _reject(task, "unsupportedOutputFormat", "outputFormat", message, allowedValues=allowed)
    # "sync" is accepted but answered like "async": the simulator always acknowledges first.
    if task.get("deliveryMethod", "async") not in _DELIVERY_METHODS:
        message = "deliveryMethod must be async or sync."
        allowed = list(_DELIVERY_METHODS)
        _reject(task, "invalidDeliveryMethod", "deliveryMethod", message, allowedValues=allowed)
    url = task.get("webhookURL")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        _reject(task, "invalidWebhookURL", "webhookURL", "webhookURL must be an http(s) URL.")
    if not isinstance(task.get("includeCost", False), bool):
        _reject(task, "invalidIncludeCost", "includeCost", "includeCost must be a boolean.")
