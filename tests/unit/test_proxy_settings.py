"""The api and the notifier tell uvicorn which peers' X-Forwarded-* headers to believe."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow_api.main import server_config as api_server_config
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


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("*", "*"),
        (" * ", "*"),
        ("10.0.0.5", "10.0.0.5"),
        ("10.244.0.0/16, fd00::/8", "10.244.0.0/16,fd00::/8"),
        ("10.0.0.1/8", "10.0.0.0/8"),  # host bits set: uvicorn would take it for a name
        ("::FFFF:1", "::ffff:1"),
    ],
)
def test_each_trusted_peer_is_an_address_or_a_network(given: str, read: str) -> None:
    assert ApiSettings(forwarded_allow_ips=given).forwarded_allow_ips == read
    assert NotifierSettings(forwarded_allow_ips=given).forwarded_allow_ips == read


@pytest.mark.parametrize(
    "given",
    [
        "ingress-nginx",  # a name: uvicorn compares it with the peer's address, never equal
        "10.0.0.0/8,*",  # * only alone: in a list uvicorn reads it as a name
        "10.0.0.0/33",
        "10.0.0.5,",
        "unix:/run/reelflow.sock",  # the servers listen on TCP: no peer is a socket path
    ],
)
def test_a_trusted_peer_that_is_no_address_stops_the_start(given: str) -> None:
    with pytest.raises(ValidationError, match="not an IP address or network"):
        ApiSettings(forwarded_allow_ips=given)
