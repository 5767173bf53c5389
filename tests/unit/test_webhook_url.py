"""The webhookURL Runware is given names the project and the scene, behind the secret."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.settings import WebhookSettings
from reelflow_submitter.settings import Settings as SubmitterSettings


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


@pytest.mark.parametrize(
    "service_settings", [ApiSettings, SubmitterSettings], ids=["api", "submitter"]
)
@pytest.mark.parametrize(
    "env",
    [
        # Compose passes an unset variable as "" (``${REELFLOW_PUBLIC_BASE_URL:-}``): the api
        # took "" for a public URL and planned its checks for webhooks that never came.
        {"REELFLOW_PUBLIC_BASE_URL": "", "REELFLOW_WEBHOOK_SECRET": ""},
        {"REELFLOW_PUBLIC_BASE_URL": "https://reelflow.example.com", "REELFLOW_WEBHOOK_SECRET": ""},
        {"REELFLOW_PUBLIC_BASE_URL": "", "REELFLOW_WEBHOOK_SECRET": "s3cret"},
    ],
    ids=["both empty", "no secret", "no public url"],
)
def test_every_service_agrees_there_are_no_webhooks_without_both_settings(
    monkeypatch: pytest.MonkeyPatch, service_settings: type[WebhookSettings], env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = service_settings()

    assert settings.webhook_url("p", 0) is None
    assert not settings.webhooks_enabled


def test_with_both_settings_every_service_gives_runware_a_webhook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REELFLOW_PUBLIC_BASE_URL", "https://reelflow.example.com")
    monkeypatch.setenv("REELFLOW_WEBHOOK_SECRET", "s3cret")

    for settings in (ApiSettings(), SubmitterSettings()):
        assert settings.webhooks_enabled
        assert settings.webhook_url("p", 0) is not None
