"""Runware's error tree and the retry policy of docs/RUNWARE.md §5.2/§5.3.

Callers decide "retry" versus "give up" with ``exc.retryable`` (or the type
:class:`RunwareTransportError`, which is always retryable); nothing here is
meant to be read out of a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from reelflow_common.errors import ReelflowError


class ErrorCategory(StrEnum):
    """The SDKs' error categories (docs/RUNWARE.md §5.2)."""

    VALIDATION = "validation"
    AUTH = "auth"
    QUOTA = "quota"
    SAFETY = "safety"
    NOT_FOUND = "notFound"
    RATE_LIMIT = "rateLimit"
    TIMEOUT = "timeout"
    PROVIDER = "provider"
    SERVER_ERROR = "serverError"
    CONNECTION = "connection"
    UNKNOWN = "unknown"


RETRYABLE_CATEGORIES = frozenset(
    {
        ErrorCategory.PROVIDER,
        ErrorCategory.TIMEOUT,
        ErrorCategory.CONNECTION,
        ErrorCategory.RATE_LIMIT,
        ErrorCategory.SERVER_ERROR,
    }
)

# Exact codes win over the prefix rules below: "providerTimeout" is a timeout and
# "invalidApiKey" an auth failure, although their prefixes say otherwise.
_EXACT_CODES: dict[str, ErrorCategory] = {
    **dict.fromkeys(
        ("invalidApiKey", "missingApiKey", "unauthorized", "forbidden", "accountSuspended"),
        ErrorCategory.AUTH,
    ),
    **dict.fromkeys(
        ("insufficientCredits", "providerInsufficientCredits", "quotaExceeded", "paymentRequired"),
        ErrorCategory.QUOTA,
    ),
    **dict.fromkeys(
        ("rateLimitExceeded", "inferenceRateLimitExceeded", "providerRateLimitExceeded"),
        ErrorCategory.RATE_LIMIT,
    ),
    **dict.fromkeys(
        (
            "contentPolicyViolation",
            "providerContentPolicyViolation",
            "sensitiveContentDetected",
            "unsafeContentDetected",
            "nsfwContentDetected",
            "promptBlocked",
            "imageBlocked",
            "moderationFailed",
        ),
        ErrorCategory.SAFETY,
    ),
    **dict.fromkeys(
        ("timeout", "providerTimeout", "providerGatewayTimeout", "requestTimeout"),
        ErrorCategory.TIMEOUT,
    ),
    **dict.fromkeys(
        (
            "inferenceError",
            "processingFailed",
            "taskFailed",
            "downloadFailed",
            "uploadFailed",
            "noAvailableServer",
            "modelUnavailable",
            "modelDisabled",
            "modelNotReady",
        ),
        ErrorCategory.PROVIDER,
    ),
    **dict.fromkeys(
        (
            "taskFailedOrNotFound",
            "taskNotFound",
            "taskExpired",
            "taskCancelled",
            "modelNotFound",
            "unknownModel",
            "mediaNotFound",
        ),
        ErrorCategory.NOT_FOUND,
    ),
    **dict.fromkeys(
        ("unknownParameter", "incompatibleParameters", "validationFailed"),
        ErrorCategory.VALIDATION,
    ),
    **dict.fromkeys(
        ("internalServerError", "serviceUnavailable", "unknownError"),
        ErrorCategory.SERVER_ERROR,
    ),
}

#: the codes this module knows by name (others are classified by prefix or HTTP status)
KNOWN_CODES = frozenset(_EXACT_CODES)

_VALIDATION_PREFIXES = (
    "invalid",
    "missing",
    "unsupported",
    "conflict",
    "duplicate",
    "value",
    "array",
    "max",
)


def classify_code(code: str | None) -> ErrorCategory:
    """Category of a Runware error code; UNKNOWN when the code says nothing we know."""
    if not code:
        return ErrorCategory.UNKNOWN
    if code in _EXACT_CODES:
        return _EXACT_CODES[code]
    lowered = code.lower()
    if any(word in lowered for word in ("credits", "quota", "balance")):
        return ErrorCategory.QUOTA
    # "timeoutProvider", the documented generation failure, lands here.
    if "timeout" in lowered:
        return ErrorCategory.TIMEOUT
    if code.startswith("provider"):
        return ErrorCategory.PROVIDER
    if code.startswith(_VALIDATION_PREFIXES):
        return ErrorCategory.VALIDATION
    return ErrorCategory.UNKNOWN


def classify_status(http_status: int | None) -> ErrorCategory:
    """Category implied by an HTTP status alone (docs/RUNWARE.md §1.5)."""
    if http_status is None:
        return ErrorCategory.UNKNOWN
    by_status = {
        400: ErrorCategory.VALIDATION,
        401: ErrorCategory.AUTH,
        402: ErrorCategory.QUOTA,
        403: ErrorCategory.AUTH,
        404: ErrorCategory.NOT_FOUND,
        408: ErrorCategory.TIMEOUT,
        429: ErrorCategory.RATE_LIMIT,
    }
    if http_status in by_status:
        return by_status[http_status]
    if http_status >= 500:
        return ErrorCategory.SERVER_ERROR
    return ErrorCategory.UNKNOWN


def is_retryable_status(http_status: int | None) -> bool:
    """408, 429 and 5xx are transient whatever the body says (the SDKs' HTTP policy)."""
    return http_status is not None and (http_status in (408, 429) or http_status >= 500)


class RunwareError(ReelflowError):
    """Runware refused or failed something; ``retryable`` says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        category: ErrorCategory | None = None,
        http_status: int | None = None,
        task_uuid: str | None = None,
        parameter: str | None = None,
        allowed_values: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.task_uuid = task_uuid
        self.parameter = parameter
        self.allowed_values: tuple[Any, ...] | None = (
            tuple(allowed_values) if allowed_values is not None else None
        )
        if category is None:
            category = classify_code(code)
            if category is ErrorCategory.UNKNOWN:
                category = classify_status(http_status)
        self.category = category
        self.retryable = category in RETRYABLE_CATEGORIES or is_retryable_status(http_status)

    def __str__(self) -> str:
        where = f" task {self.task_uuid}" if self.task_uuid else ""
        status = f" HTTP {self.http_status}" if self.http_status is not None else ""
        return f"{self.code or self.category}{status}{where}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, category={self.category.value!r}, "
            f"retryable={self.retryable}, http_status={self.http_status!r}, "
            f"task_uuid={self.task_uuid!r}, message={self.message!r})"
        )


class RunwareTransportError(RunwareError):
    """No usable HTTP answer (connection refused or dropped, timeout); always retryable."""

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("category", ErrorCategory.CONNECTION)
        super().__init__(message, **details)

    def about(self, task_uuid: str) -> RunwareTransportError:
        """The same failure, as one task of the request met it (each caller raises its own)."""
        return RunwareTransportError(
            self.message, code=self.code, category=self.category, task_uuid=task_uuid
        )


class RunwareRequestError(RunwareError):
    """The whole request was refused (HTTP status, authentication, an unreadable body)."""


class RunwareTaskError(RunwareError):
    """Runware refused or does not know one task, named by ``task_uuid``."""


def not_mentioned(task_uuid: str, *, http_status: int | None = None) -> RunwareTaskError:
    """Runware's answer said nothing about the task (an answer to a request of several, or
    a poll): whether it took the task, or where it stands, is not told. Asking again with
    the same task UUID is the only safe reading (a second submit answers a conflict)."""
    return RunwareTaskError(
        "Runware's answer did not mention the task",
        code="missingResult",
        category=ErrorCategory.SERVER_ERROR,
        http_status=http_status,
        task_uuid=task_uuid,
    )


def is_task_not_found(error: RunwareError) -> bool:
    """Runware's own word that it does not know the task: an error entry naming that task.

    A not-found status without such an entry (a bare 404, a proxy's page) is no answer
    about the task at all; the client reports it as an outage.
    """
    return (
        isinstance(error, RunwareTaskError)
        and error.category is ErrorCategory.NOT_FOUND
        and error.task_uuid is not None
    )


def is_outage(error: RunwareError) -> bool:
    """Runware gave no word on the request: no answer, or 408, 429 or 5xx for all of it.

    Such an answer says nothing about the task (it may even have been stored, when
    the answer was lost): asking again later with the same task UUID is all there is
    to do, and it is no attempt that failed.
    """
    return isinstance(error, RunwareTransportError) or is_retryable_status(error.http_status)
