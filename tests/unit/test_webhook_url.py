"""The webhookURL Runware is given names the project and the scene, behind the secret."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from reelflow_common.settings import WebhookSettings


def test_the_webhook_url_carries_the_project_and_the_scene() -> None:
    settings = WebhookSettings(
        public_base_url="https://reelflow.example.com/", webhook_secret=SecretStr("s3cret")
    )

    url = settings.webhook_url("0b6f-1", 7)

    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "reelflow.example.com",
        "/v1/webhooks/runware/s3cret",
    )
    assert parse_qs(parts.query) == {"project_id": ["0b6f-1"], "scene": ["7"]}


def test_without_a_public_url_or_a_secret_there_is_no_webhook() -> None:
    assert WebhookSettings(webhook_secret=SecretStr("s")).webhook_url("p", 0) is None
    assert WebhookSettings(public_base_url="https://x").webhook_url("p", 0) is None
