"""HTTP request and response models (separate from the message models in ``reelflow_common``).

A request body's model is a :class:`~reelflow_common.client_json.ClientJson`: strict JSON types.

A project's status is :class:`reelflow_common.store.ProjectStatusView`: the
notifier sends the same object in its snapshots.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reelflow_api.validation import AIR_ID
from reelflow_common.client_json import ClientJson
from reelflow_common.store import ProjectStatusView

#: Runware fails a prompt shorter than this (or only whitespace) after a 202
PROMPT_MIN_CHARS = 2
#: control characters (C0, DEL and C1), but for tab, line feed and carriage return: no
#: text a person wrote holds them (a NUL from a script's bad encoding, say), and a clip
#: would fail after a 202
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def without_control_characters(text: str) -> str:
    """``text``, unless it holds a control character other than tab, LF or CR (a 422 names
    the first: which and where)."""
    if found := _CONTROL.search(text):
        raise ValueError(
            f"must not contain control characters: U+{ord(found.group()):04X} at character"
            f" {found.start()} (tab, line feed and carriage return are fine)"
        )
    return text


class SceneIn(ClientJson):
    """One scene: becomes one clip, one Runware ``videoInference`` task."""

    prompt: str = Field(min_length=PROMPT_MIN_CHARS, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    duration: float | None = Field(
        default=None, gt=0, le=60, allow_inf_nan=False, description="seconds"
    )
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    seed: int | None = Field(default=None, ge=1, le=9223372036854775807)
    fps: int | None = Field(default=None, ge=1, le=120)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if len(prompt.strip()) < PROMPT_MIN_CHARS:
            raise ValueError(f"must have at least {PROMPT_MIN_CHARS} characters besides whitespace")
        return without_control_characters(prompt)

    @field_validator("negative_prompt")
    @classmethod
    def _negative_is_text(cls, negative_prompt: str | None) -> str | None:
        return None if negative_prompt is None else without_control_characters(negative_prompt)


class CreateProjectIn(ClientJson):
    """``POST /v1/projects``."""

    title: str = Field(default="", max_length=500)
    model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        pattern=AIR_ID.pattern,
        description=AIR_ID.description,
        examples=[AIR_ID.example],
    )
    scenes: list[SceneIn] = Field(min_length=1, max_length=50)

    @field_validator("title")
    @classmethod
    def _title_is_text(cls, title: str) -> str:
        return without_control_characters(title)


class ProjectChanged(ProjectStatusView):
    """``POST …/retry`` and ``POST …/cancel``: the project's status after the call, and how many
    clips it changed (a client tells "nothing to do" from work accepted by it, not the 202)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                ProjectStatusView.model_json_schema()["examples"][0] | {"clips_changed": 1}
            ]
        }
    )

    clips_changed: int = Field(
        ge=0,
        description="clips this call retried or cancelled; 0: there was nothing to do (no"
        " failed clip to retry, no unfinished clip to cancel), and the project is as it was",
    )


class ProjectCancelled(ProjectChanged):
    """``POST …/cancel``: a :class:`ProjectChanged` that also says how many of the clips it
    cancelled reelflow knows Runware may bill all the same."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                ProjectStatusView.model_json_schema()["examples"][0]
                | {"clips_changed": 1, "clips_may_be_billed": 1}
            ]
        }
    )

    clips_may_be_billed: int = Field(
        ge=0,
        description="of the clips this call cancelled, how many reelflow knows Runware may bill"
        " all the same: processing ones, and queued ones whose submit may still go without"
        " reading the cancel (the project's first seconds) or may have reached Runware"
        " unanswered (an outage, a lost submit chain). Not an upper bound: a clip whose submit"
        " was in flight, or was tried again after an ambiguous error, may be billed without"
        " being counted; 0: none that reelflow knows of",
    )


class ProjectList(BaseModel):
    """``GET /v1/projects``: one page of the tenant's projects, newest first."""

    items: list[ProjectStatusView] = Field(
        description="project statuses as GET /v1/projects/{project_id} answers them, without"
        " `results`"
    )
    next_cursor: str | None = Field(
        description="pass as `cursor` to read the next page; null on the last page",
        examples=["eyJjIjoiMjAyNi0xMi0wMVQxMDowMDowMC4xMDBaIiwiaSI6IjZmMWQwYyJ9"],
    )

    def wire(self) -> dict[str, Any]:
        """The JSON sent: ``next_cursor`` is null on the last page; items omit ``results``."""
        return {"items": [item.wire() for item in self.items], "next_cursor": self.next_cursor}


class WebhookReceived(BaseModel):
    """``POST /v1/webhooks/runware/{secret}``: the hint is queued."""

    received: int = Field(
        ge=1, description="task UUIDs the body named; each is checked with Runware now"
    )
