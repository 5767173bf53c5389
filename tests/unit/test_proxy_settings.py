"""The api and the notifier tell uvicorn which peers' X-Forwarded-* headers to believe."""

from __future__ import annotations

import pytest

from reelflow_api.__main__ import server_config as api_server_config
from reelflow_api.settings import Settings as ApiSettings
from reelflow_notifier.main import server_config as notifier_server_config
from reelflow_notifier.settings import Settings as NotifierSettings


def test_the_api_and_the_notifier_pass_the_setting_to_uvicorn() -> None:
    proxies = "10.0.0.0/8,fd00::/8"
    api = api_server_config(ApiSettings(forwarded_allow_ips=proxies))
    notifier = notifier_server_config(NotifierSettings(forwarded_allow_ips=proxies))
    assert api.proxy_headers
    assert notifier.proxy_headers
    assert api.forwarded_allow_ips == notifier.forwarded_allow_ips == proxies


def test_uvicorns_own_variable_is_not_a_second_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    monkeypatch.delenv("REELFLOW_FORWARDED_ALLOW_IPS", raising=False)
    assert api_server_config(ApiSettings()).forwarded_allow_ips == "127.0.0.1,::1"
    assert notifier_server_config(NotifierSettings()).forwarded_allow_ips == "127.0.0.1,::1"
