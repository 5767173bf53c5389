"""``reelflow watch`` in a pipe when the server goes away: the lines a script reads stay
clean (the notices are on stderr), and it gives up after the time the docs name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import reelflow_cli.app as cli
import reelflow_cli.watch as watching
from reelflow_cli.client import Client

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_a_lost_connection_is_said_on_stderr_and_ends_in_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/config":
            return httpx.Response(200, json={"ws_url": "ws://notifier.test"})
        raise httpx.ConnectError("connection refused", request=request)  # the API is down

    def client() -> Client:
        return Client("http://api.test", "rf_test", transport=httpx.MockTransport(answer))

    monkeypatch.setattr(cli, "_client", client)
    monkeypatch.setattr(watching, "FIRST_DELAY_S", 0.0)  # no waiting between the tries
    monkeypatch.setattr(watching, "MAX_ATTEMPTS", 2)

    result = CliRunner().invoke(cli.app, ["watch", "p1"])

    assert result.exit_code == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("connection lost; reconnecting…") == 2
    assert "cannot reach reelflow" in result.stderr


def test_the_docs_say_how_long_a_watch_waits_for_a_lost_connection() -> None:
    low, high = watching.ride_out_s()
    said = f"{low} to {high} s"
    assert said in " ".join(README.split())
    assert said in " ".join((cli.watch.__doc__ or "").split())
