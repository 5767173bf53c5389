"""What goes to Runware and what comes back, in snake_case."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow_common.runware.errors import (
    RETRYABLE_CATEGORIES,
    ErrorCategory,
    RunwareTaskError,
    classify_code,
)

TaskStatus = Literal["processing", "success", "error"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VideoRequest(_Frozen):
    """One ``videoInference`` task; fields left ``None`` are not sent."""

    task_uuid: str = Field(min_length=1)
    model: str = Field(min_length=1)
    positive_prompt: str = Field(min_length=1)
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    fps: int | None = None
    webhook_url: str | None = None


class SubmitResult(_Frozen):
    """Runware holds the task; ``already_submitted`` when an earlier submit got there first."""

    task_uuid: str
    already_submitted: bool = False


class TaskFailure(_Frozen):
    """Why Runware gave up on a task, as it said it."""

    code: str | None = None
    message: str = ""
    parameter: str | None = None
    allowed_values: tuple[Any, ...] | None = None

    @property
    def category(self) -> ErrorCategory:
        return classify_code(self.code)

    @property
    def retryable(self) -> bool:
        """Whether the same work may succeed as a new task (the task itself is over)."""
        return self.category in RETRYABLE_CATEGORIES

    def to_error(self, task_uuid: str, *, http_status: int | None = None) -> RunwareTaskError:
        return RunwareTaskError(
            self.message or "task failed",
            code=self.code,
            http_status=http_status,
            task_uuid=task_uuid,
            parameter=self.parameter,
            allowed_values=self.allowed_values,
        )


class TaskState(_Frozen):
    """Where one task stands, from a ``getResponse`` answer or a webhook body."""

    task_uuid: str
    status: TaskStatus
    progress: int | None = None
    video_uuid: str | None = None
    video_url: str | None = None
    seed: int | None = None
    cost: float | None = None
    error: TaskFailure | None = None
