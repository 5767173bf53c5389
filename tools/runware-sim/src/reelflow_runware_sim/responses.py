"""How a task's state reads in a `getResponse` answer and in a webhook body."""

from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import DOCS, failure_message
from .state import Generation, SimTask

FailureShape = Literal["errors", "data"]


@dataclass
class Answer:
    """The `data` and `errors` items a request has collected so far."""

    data: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # the status of each error

    def status(self) -> int:
        """200 when any task got data, else the first error's status."""
        return 200 if self.data or not self.statuses else self.statuses[0]

    def body(self) -> dict[str, Any]:
        """The JSON response body: `data`, `errors`, or both."""
        body: dict[str, Any] = {}
        if self.data or not self.errors:
            body["data"] = self.data
        if self.errors:
            body["errors"] = self.errors
        return body


def video_url(public_url: str, video_uuid: str) -> str:
    """Where the simulator serves a finished video."""
    return f"{public_url}/video/{video_uuid}.mp4"


def render_generation(
    task: SimTask,
    generation: Generation,
    now: float,
    public_url: str,
    shape: FailureShape,
    answer: Answer,
) -> None:
    """Add one generation's current item to `answer`, in data or in errors."""
    head = {"taskType": "videoInference", "taskUUID": task.request.task_uuid}
    state = task.item_state(generation, now)
    if state == "processing":
        progress = task.progress(generation, now)
        answer.data.append({**head, "status": "processing", "progress": progress})
    elif state == "success":
        item = {
            **head,
            "status": "success",
            "videoUUID": generation.video_uuid,
            "videoURL": video_url(public_url, generation.video_uuid),
            "seed": generation.seed,
        }
        if task.request.include_cost:
            item["cost"] = generation.cost
        answer.data.append(item)
    else:
        code = task.error_code or "unknownError"
        if shape == "errors":
            # Third-party reports say generation failures come with HTTP 200: unconfirmed.
            answer.errors.append(
                {
                    **head,
                    "code": code,
                    "status": "error",
                    "message": failure_message(code),
                    "documentation": DOCS,
                }
            )
            answer.statuses.append(200)
        else:
            error = {"code": code, "message": failure_message(code)}
            answer.data.append({**head, "status": "error", "error": error})
