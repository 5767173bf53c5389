"""Runware client: submit video tasks, poll them, parse webhook bodies, typed errors."""

from reelflow_common.runware.batching import (
    GetResponseBatcher,
    SubmitBatcher,
    TaskChecker,
)
from reelflow_common.runware.client import RunwareClient
from reelflow_common.runware.errors import (
    ErrorCategory,
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
    classify_code,
    is_outage,
    is_task_not_found,
)
from reelflow_common.runware.models import (
    SubmitResult,
    TaskFailure,
    TaskState,
    TaskStatus,
    VideoRequest,
)
from reelflow_common.runware.parsing import parse_task_states

__all__ = [
    "ErrorCategory",
    "GetResponseBatcher",
    "RunwareClient",
    "RunwareError",
    "RunwareRequestError",
    "RunwareTaskError",
    "RunwareTransportError",
    "SubmitBatcher",
    "SubmitResult",
    "TaskChecker",
    "TaskFailure",
    "TaskState",
    "TaskStatus",
    "VideoRequest",
    "classify_code",
    "is_outage",
    "is_task_not_found",
    "parse_task_states",
]
