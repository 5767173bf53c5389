"""Runware-style error objects, as they appear in a response's `errors` array."""

from dataclasses import dataclass, field
from typing import Any

DOCS = "https://runware.ai/docs/en/video-inference/api-reference"

INVALID_API_KEY = {
    "code": "invalidApiKey",
    "message": "Invalid API key. Get one at https://my.runware.ai/signup",
    "parameter": "apiKey",
    "taskType": "authentication",
}

# Messages Runware documents for these codes; others are made up in the same style.
MESSAGES = {
    "timeoutProvider": (
        "The external provider did not respond within the timeout window. "
        "The request was automatically terminated."
    ),
    "unsupportedDuration": (
        "Invalid value for duration parameter. "
        "This duration is not supported by the model architecture."
    ),
}


@dataclass(frozen=True)
class ApiError:
    """One entry of `errors`, with the HTTP status it would give a request on its own."""

    code: str
    message: str
    status: int = 400
    fields: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON object for the `errors` array."""
        return {"code": self.code, "message": self.message, **self.fields}


def task_error(
    code: str,
    message: str,
    task: dict[str, Any],
    *,
    parameter: str | None = None,
    status: int = 400,
    **extra: Any,
) -> ApiError:
    """An error scoped to one task of the request, echoing its taskType and taskUUID."""
    fields: dict[str, Any] = {}
    if parameter is not None:
        fields["parameter"] = parameter
    fields.update(extra)
    fields["documentation"] = f"{DOCS}#request-{parameter}" if parameter else DOCS
    if isinstance(task.get("taskType"), str):
        fields["taskType"] = task["taskType"]
    if isinstance(task.get("taskUUID"), str):
        fields["taskUUID"] = task["taskUUID"]
    return ApiError(code, message, status, fields)


def failure_message(code: str) -> str:
    """The message for a generation that ended with `code`."""
    return MESSAGES.get(code, f"The task failed with {code}.")
