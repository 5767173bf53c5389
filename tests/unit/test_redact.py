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


def test_every_string_value_of_an_event_is_redacted() -> None:
    event = {"event": "GET /v1/ws?token=rf_1", "url": "/v1/webhooks/runware/x", "n": 3}

    assert redact_event(None, "info", event) == {
        "event": "GET /v1/ws?token=***",
        "url": "/v1/webhooks/runware/***",
        "n": 3,
    }
