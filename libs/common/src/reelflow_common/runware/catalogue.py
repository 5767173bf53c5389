"""What each Runware video model accepts, so a request it would refuse is refused at once.

Runware checks every task against its model's schema and fails the ones that do
not fit (``unsupportedDuration`` with ``allowedValues``, and the like; see
docs/RUNWARE.md §2.3). Sent as-is, such a scene would get a 202 and then a failed
clip; checked here, the whole project gets a 422 that says which scene and what
the model allows, before anything is stored or spent.

Only the models docs/RUNWARE.md §2.3 lists, and only the rules it documents (the
SDK's generated per-model types, Veo's published validation rules). A model not
listed here is sent as-is: Runware is the judge of what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reelflow_common.domain import ClipRequest

#: a Runware AIR id, provider:model@version (the api checks every scene's model with it,
#: reelflow-admin every allowed model)
AIR_ID_PATTERN = r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$"

#: the pixel pairs Veo 3.1 Fast accepts as width/height (D-VEO)
_VEO_SIZES = ((1280, 720), (720, 1280), (1920, 1080), (1080, 1920))


@dataclass(frozen=True)
class ModelRules:
    """One model's documented limits; ``None`` means the schema does not restrict it."""

    #: the only durations (seconds) the model accepts
    durations: tuple[float, ...] | None = None
    #: the only width x height pairs it accepts
    sizes: tuple[tuple[int, int], ...] | None = None
    #: the only fps values it accepts; empty: its schema has no ``fps``
    fps: tuple[int, ...] = ()
    accepts_seed: bool = True
    accepts_negative_prompt: bool = False


MODEL_RULES: dict[str, ModelRules] = {
    # The pixel pairs are documented for Veo 3.1 Fast only (D-VEO); the other Veo
    # models' width/height is left to Runware.
    "google:3@3": ModelRules(durations=(4, 6, 7, 8), sizes=_VEO_SIZES),
    "google:3@2": ModelRules(durations=(4, 6, 7, 8)),
    "google:veo@3.1-lite": ModelRules(durations=(4, 6, 8)),
    "klingai:5@3": ModelRules(durations=(5, 10), accepts_seed=False, accepts_negative_prompt=True),
    "bytedance:2@1": ModelRules(),
    "minimax:3@1": ModelRules(fps=(25,), accepts_seed=False),
}


@dataclass(frozen=True)
class RuleViolation:
    """One field of one scene that its model does not accept."""

    scene_index: int
    field: str
    message: str
    allowed: list[Any] | None = None


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _violations(rules: ModelRules, index: int, scene: ClipRequest) -> list[RuleViolation]:
    found: list[RuleViolation] = []
    if rules.durations is not None and scene.duration not in rules.durations:
        durations: list[Any] = [_number(d) for d in rules.durations]
        found.append(RuleViolation(index, "duration", "not a duration this model makes", durations))
    size = (scene.width, scene.height)
    if rules.sizes is not None and None not in size and size not in rules.sizes:
        sizes: list[Any] = [f"{w}x{h}" for w, h in rules.sizes]
        found.append(RuleViolation(index, "width", "not a size this model makes", sizes))
    if scene.fps is not None and scene.fps not in rules.fps:
        if rules.fps:
            found.append(RuleViolation(index, "fps", "not an fps this model makes", [*rules.fps]))
        else:
            found.append(RuleViolation(index, "fps", "this model takes no fps"))
    if scene.seed is not None and not rules.accepts_seed:
        found.append(RuleViolation(index, "seed", "this model takes no seed"))
    if scene.negative_prompt is not None and not rules.accepts_negative_prompt:
        found.append(RuleViolation(index, "negative_prompt", "this model takes no negative prompt"))
    return found


def default_duration(model: str, configured: float) -> float:
    """The duration of a scene that names none: ``configured``, or the model's shortest
    when it makes no clip of that length (Kling has no 4 s clip)."""
    rules = MODEL_RULES.get(model)
    if rules is None or rules.durations is None or configured in rules.durations:
        return configured
    return min(rules.durations)


def rule_violations(model: str, scenes: list[ClipRequest]) -> list[RuleViolation]:
    """What Runware would refuse in these scenes for this model; empty for a model not listed."""
    rules = MODEL_RULES.get(model)
    if rules is None:
        return []
    return [found for i, scene in enumerate(scenes) for found in _violations(rules, i, scene)]
