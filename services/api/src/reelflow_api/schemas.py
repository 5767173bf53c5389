"""HTTP request models (separate from the message models in ``reelflow_common``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SceneIn(BaseModel):
    """One scene: becomes one clip, one Runware ``videoInference`` task."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    duration: float | None = Field(default=None, gt=0, le=60, description="seconds")
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    seed: int | None = Field(default=None, ge=1, le=9223372036854775807)
    fps: int | None = Field(default=None, ge=1, le=120)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        # Only whitespace describes nothing; Runware would fail the clip after a 202.
        if not prompt.strip():
            raise ValueError("must not be blank")
        return prompt


class CreateProjectIn(BaseModel):
    """``POST /v1/projects``."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=500)
    model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$",
        description="Runware AIR id, e.g. google:3@3",
    )
    scenes: list[SceneIn] = Field(min_length=1, max_length=50)


class ProjectList(BaseModel):
    items: list[dict[str, object]]
    next_cursor: str | None
