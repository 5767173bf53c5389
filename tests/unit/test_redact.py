"""URL secrets are redacted from any text a log line may carry."""

from __future__ import annotations

import pytest

from reelflow_common.redact import redact, redact_event


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:5 - "POST /v1/webhooks/runware/s3cret?project_id=p&scene=1 HTTP/1.1" 202',
            '127.0.0.1:5 - "POST /v1/webhooks/runware/***?project_id=p&scene=1 HTTP/1.1" 202',
        ),
        (
            '"WebSocket /v1/ws/projects/p?after_seq=3&token=rf_abc" [accepted]',
            '"WebSocket /v1/ws/projects/p?after_seq=3&token=***" [accepted]',
        ),
        ("https://x/v1/webhooks/runware/s3cret", "https://x/v1/webhooks/runware/***"),
        (
            '"GET /v1/videos/videos/p/0/t.mp4?expires=9&signature=ab12 HTTP/1.1" 200',
            '"GET /v1/videos/videos/p/0/t.mp4?expires=9&signature=*** HTTP/1.1" 200',
        ),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_secrets_in_urls_are_masked(line: str, expected: str) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # The services read query_params, which percent-decodes a name (and '+' as a space):
        # each of these is the parameter they read, uvicorn logs it as it was sent.
        (
            '"WebSocket /v1/ws?x=1&%74oken=rf_abc" [accepted]',
            '"WebSocket /v1/ws?x=1&%74oken=***" [accepted]',
        ),
        ("/v1/ws/projects/p?%74icket=t1", "/v1/ws/projects/p?%74icket=***"),
        ("/v1/ws?%74%6F%6B%65%6E=rf_abc&after_seq=2", "/v1/ws?%74%6F%6B%65%6E=***&after_seq=2"),
        (
            '"GET /v?expires=9&%73ignature=ab12 HTTP/1.1"',
            '"GET /v?expires=9&%73ignature=*** HTTP/1.1"',
        ),
        ("/v1/ws?tok%65n=rf_abc", "/v1/ws?tok%65n=***"),
        # Names in another case are not what the services read; masked all the same.
        ("/v1/ws?TOKEN=rf_abc&Ticket=t1", "/v1/ws?TOKEN=***&Ticket=***"),
        # A value is masked whole, to the next '&': encoded separators and a '?' inside it too.
        ("/v1/ws?token=rf_a%26b%3Dc+d&x=1", "/v1/ws?token=***&x=1"),
        ("/v1/ws?token=rf_a?ticket=t1&x=1", "/v1/ws?token=***&x=1"),
        # A URL inside another parameter's value.
        ("/login?next=/v1/ws?token=rf_abc", "/login?next=/v1/ws?token=***"),
        # Every occurrence (query_params.get reads the last one).
        ("/v1/ws?token=rf_1&token=rf_2", "/v1/ws?token=***&token=***"),
        # Names that decode to something else are left alone, and so are empty values.
        (
            "/v1/ws?tokens=1&token+=2&x%74oken=3&token=",
            "/v1/ws?tokens=1&token+=2&x%74oken=3&token=",
        ),
    ],
)
def test_a_secret_parameter_is_masked_however_its_name_is_spelled(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_every_string_value_of_an_event_is_redacted() -> None:
    event = {"event": "GET /v1/ws?token=rf_1", "url": "/v1/webhooks/runware/x", "n": 3}

    assert redact_event(None, "info", event) == {
        "event": "GET /v1/ws?token=***",
        "url": "/v1/webhooks/runware/***",
        "n": 3,
    }
