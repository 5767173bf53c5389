"""Error classification (docs/RUNWARE.md §5.2/§5.3) and that the API key never leaks."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from reelflow_common.errors import ReelflowError
from reelflow_common.runware import (
    ErrorCategory,
    RunwareClient,
    RunwareError,
    RunwareRequestError,
    RunwareTaskError,
    RunwareTransportError,
    classify_code,
)
from reelflow_common.runware.errors import classify_status
from reelflow_common.settings import RunwareSettings

KEY = "rw-sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("invalidApiKey", ErrorCategory.AUTH),
        ("missingApiKey", ErrorCategory.AUTH),
        ("unsupportedDuration", ErrorCategory.VALIDATION),
        ("invalidModel", ErrorCategory.VALIDATION),
        ("missingPositivePrompt", ErrorCategory.VALIDATION),
        ("conflictTaskUUID", ErrorCategory.VALIDATION),
        ("incompatibleParameters", ErrorCategory.VALIDATION),
        ("insufficientCredits", ErrorCategory.QUOTA),
        ("providerInsufficientCredits", ErrorCategory.QUOTA),
        ("lowAccountBalance", ErrorCategory.QUOTA),
        ("contentPolicyViolation", ErrorCategory.SAFETY),
        ("providerContentPolicyViolation", ErrorCategory.SAFETY),
        ("taskFailedOrNotFound", ErrorCategory.NOT_FOUND),
        ("taskExpired", ErrorCategory.NOT_FOUND),
        ("rateLimitExceeded", ErrorCategory.RATE_LIMIT),
        ("providerRateLimitExceeded", ErrorCategory.RATE_LIMIT),
        ("timeoutProvider", ErrorCategory.TIMEOUT),
        ("providerGatewayTimeout", ErrorCategory.TIMEOUT),
        ("providerSomethingBroke", ErrorCategory.PROVIDER),
        ("noAvailableServer", ErrorCategory.PROVIDER),
        ("inferenceError", ErrorCategory.PROVIDER),
        ("internalServerError", ErrorCategory.SERVER_ERROR),
        ("whoKnows", ErrorCategory.UNKNOWN),
        (None, ErrorCategory.UNKNOWN),
    ],
)
def test_codes_fall_into_the_sdk_categories(code: str | None, category: ErrorCategory) -> None:
    assert classify_code(code) is category


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("timeoutProvider", True),
        ("providerRateLimitExceeded", True),
        ("noAvailableServer", True),
        ("internalServerError", True),
        ("unsupportedDuration", False),
        ("invalidApiKey", False),
        ("insufficientCredits", False),
        ("contentPolicyViolation", False),
        ("taskFailedOrNotFound", False),
        ("whoKnows", False),
    ],
)
def test_retryable_follows_the_category(code: str, retryable: bool) -> None:
    error = RunwareTaskError("x", code=code, http_status=200, task_uuid="t")

    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("status", "category", "retryable"),
    [
        (400, ErrorCategory.VALIDATION, False),
        (401, ErrorCategory.AUTH, False),
        (402, ErrorCategory.QUOTA, False),
        (403, ErrorCategory.AUTH, False),
        (404, ErrorCategory.NOT_FOUND, False),
        (408, ErrorCategory.TIMEOUT, True),
        (429, ErrorCategory.RATE_LIMIT, True),
        (500, ErrorCategory.SERVER_ERROR, True),
        (503, ErrorCategory.SERVER_ERROR, True),
        (504, ErrorCategory.SERVER_ERROR, True),
        (418, ErrorCategory.UNKNOWN, False),
    ],
)
def test_http_status_alone_decides_when_the_body_says_nothing(
    status: int, category: ErrorCategory, retryable: bool
) -> None:
    error = RunwareRequestError("refused", http_status=status)

    assert classify_status(status) is category
    assert error.category is category
    assert error.retryable is retryable


def test_a_transient_http_status_is_retryable_whatever_the_code() -> None:
    error = RunwareRequestError("busy", code="whoKnows", http_status=503)

    assert error.category is ErrorCategory.SERVER_ERROR
    assert error.retryable


def test_the_code_decides_the_category_over_the_status() -> None:
    error = RunwareRequestError("bad key", code="invalidApiKey", http_status=400)

    assert error.category is ErrorCategory.AUTH
    assert not error.retryable


def test_validation_error_carries_parameter_and_allowed_values() -> None:
    error = RunwareTaskError(
        "bad duration",
        code="unsupportedDuration",
        http_status=400,
        task_uuid="t-1",
        parameter="duration",
        allowed_values=[4, 6, 8],
    )

    assert (error.parameter, error.allowed_values, error.task_uuid) == (
        "duration",
        (4, 6, 8),
        "t-1",
    )
    assert str(error) == "unsupportedDuration HTTP 400 task t-1: bad duration"


def test_transport_errors_are_retryable_reelflow_errors() -> None:
    error = RunwareTransportError("no answer", category=ErrorCategory.CONNECTION)

    assert isinstance(error, RunwareError)
    assert isinstance(error, ReelflowError)
    assert error.retryable


def test_settings_repr_hides_the_api_key() -> None:
    settings = RunwareSettings(runware_api_key=SecretStr(KEY))

    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert KEY not in str(settings.model_dump())


async def test_client_repr_hides_the_api_key() -> None:
    async with RunwareClient.open(RunwareSettings(runware_api_key=SecretStr(KEY))) as client:
        assert KEY not in repr(client)


async def test_a_client_without_a_key_refuses_to_open_with_a_clear_error() -> None:
    with pytest.raises(RunwareRequestError, match="no Runware API key") as caught:
        async with RunwareClient.open(RunwareSettings(runware_api_key=None)):
            pass

    assert caught.value.category is ErrorCategory.AUTH
    assert not caught.value.retryable
