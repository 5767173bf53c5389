"""``reelflow`` run in this process against an API that answers what a test says."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner, Result

import reelflow_cli.app as cli
from reelflow_cli.client import Client

API_URL = "http://api.test"


def invoke(monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, *args: str) -> Result:
    """``reelflow ARGS``, every request answered with ``answer``; no traceback printed."""

    def client() -> Client:
        return Client(API_URL, "rf_test", transport=httpx.MockTransport(lambda _: answer))

    monkeypatch.setattr(cli, "_client", client)
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result
