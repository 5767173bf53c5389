"""What each simulated video model accepts, what it costs and how long it takes.

Rules follow the Runware SDK's generated per-model schemas (`docs/RUNWARE.md`
§2.3). Prices and latencies are plausible figures, not measurements (§8).
"""

from dataclasses import dataclass, field

# Pixel pairs Veo 3.1 accepts; other models take any size inside the generic limits.
VEO_DIMENSIONS = ((1280, 720), (720, 1280), (1920, 1080), (1080, 1920))


@dataclass(frozen=True)
class Latency:
    """A log-normal latency in simulated seconds: `median * exp(sigma * N(0, 1))`, floored."""

    median: float
    sigma: float
    floor: float = 15.0


@dataclass(frozen=True)
class ModelSpec:
    """One model's validation rules, price and latency."""

    air: str
    name: str
    latency: Latency
    cost_per_second: float
    durations: tuple[float, ...] | None = None  # None: any float in duration_range
    duration_range: tuple[float, float] = (1.0, 10.0)
    resolutions: tuple[str, ...] = ()
    dimensions: tuple[tuple[int, int], ...] | None = None  # None: generic limits
    fps: tuple[int, ...] | None = None  # None: the fps field is not accepted
    accepts_seed: bool = True
    accepts_negative_prompt: bool = False
    # Multiplier on cost_per_second per resolution preset and with generated audio.
    resolution_price: dict[str, float] = field(default_factory=dict)
    audio_price: float = 1.0


_VEO_PRICES = {"720p": 1.0, "1080p": 1.0, "4K": 3.0}

MODELS: dict[str, ModelSpec] = {
    spec.air: spec
    for spec in (
        ModelSpec(
            air="google:3@3",
            name="Veo 3.1 Fast",
            # Median 90 s, about 88% under 3 min, a thin tail past 10 min.
            latency=Latency(median=90.0, sigma=0.6, floor=20.0),
            cost_per_second=0.10,
            durations=(4, 6, 7, 8),
            resolutions=("720p", "1080p", "4K"),
            dimensions=VEO_DIMENSIONS,
            resolution_price=_VEO_PRICES,
            audio_price=1.5,
        ),
        ModelSpec(
            air="google:3@2",
            name="Veo 3.1",
            latency=Latency(median=150.0, sigma=0.6, floor=30.0),
            cost_per_second=0.20,
            durations=(4, 6, 7, 8),
            resolutions=("720p", "1080p", "4K"),
            dimensions=VEO_DIMENSIONS,
            resolution_price=_VEO_PRICES,
            audio_price=2.0,
        ),
        ModelSpec(
            air="google:veo@3.1-lite",
            name="Veo 3.1 Lite",
            latency=Latency(median=80.0, sigma=0.6, floor=20.0),
            cost_per_second=0.05,
            durations=(4, 6, 8),
            resolutions=("720p", "1080p"),
            dimensions=VEO_DIMENSIONS[:2],
        ),
        ModelSpec(
            air="klingai:5@3",
            name="KlingAI 2.1 Master",
            latency=Latency(median=180.0, sigma=0.5, floor=40.0),
            cost_per_second=0.28,
            durations=(5, 10),
            accepts_seed=False,
            accepts_negative_prompt=True,
        ),
        ModelSpec(
            air="bytedance:2@1",
            name="Seedance 1.0 Pro",
            latency=Latency(median=60.0, sigma=0.5, floor=15.0),
            cost_per_second=0.12,
            duration_range=(1.2, 12.0),
            resolutions=("480p", "1080p"),
            resolution_price={"480p": 0.25, "1080p": 1.0},
        ),
        ModelSpec(
            air="minimax:3@1",
            name="MiniMax Hailuo 02",
            latency=Latency(median=240.0, sigma=0.4, floor=60.0),
            cost_per_second=0.045,
            duration_range=(1.0, 10.0),
            fps=(25,),
            accepts_seed=False,
        ),
    )
}


def price(spec: ModelSpec, duration: float, resolution: str | None, audio: bool) -> float:
    """The USD cost of one generated video, as `includeCost` reports it."""
    rate = spec.cost_per_second * spec.resolution_price.get(resolution or "", 1.0)
    if audio:
        rate *= spec.audio_price
    return round(rate * duration, 4)
