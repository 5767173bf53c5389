"""The submitter's decisions, pure: no broker, no database, no HTTP."""

from __future__ import annotations

import random
from dataclasses import dataclass

from reelflow_common.runware import RunwareError, VideoRequest
from reelflow_common.store import Clip


@dataclass(frozen=True)
class RetryLater:
    """Submit again, with the same task UUID, after ``delay_s``."""

    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """The clip fails with Runware's code and message."""

    code: str
    message: str


def video_request(clip: Clip, *, webhook_url: str | None) -> VideoRequest:
    return VideoRequest(
        task_uuid=clip.task_uuid,
        model=clip.model,
        positive_prompt=clip.prompt,
        duration=clip.duration,
        width=clip.width,
        height=clip.height,
        negative_prompt=clip.negative_prompt,
        seed=clip.seed,
        fps=clip.fps,
        webhook_url=webhook_url,
    )


def retry_delay_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half to all of ``base * 2**(attempt-1)``, capped."""
    # The exponent is bounded: 2**attempt as a float overflows for a large attempt.
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return float(ceiling * rng.uniform(0.5, 1.0))


def after_submit_error(
    error: RunwareError,
    *,
    attempt: int,
    max_attempts: int,
    base_s: float,
    cap_s: float,
    rng: random.Random,
) -> RetryLater | GiveUp:
    """What to do when Runware did not take the task."""
    if error.retryable and attempt < max_attempts:
        return RetryLater(retry_delay_s(attempt, base_s=base_s, cap_s=cap_s, rng=rng))
    return GiveUp(code=error.code or error.category.value, message=error.message)
