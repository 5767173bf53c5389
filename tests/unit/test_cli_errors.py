"""What ``reelflow`` prints, and exits with, for each kind of refusal the API answers."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import reelflow_cli.app as cli
from tests.unit.cli_runner import invoke

PROBLEM_JSON = "application/problem+json"


def run(monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, *args: str) -> tuple[int, str]:
    """``reelflow ARGS`` against an API that answers ``answer``: (exit code, stderr)."""
    result = invoke(monkeypatch, answer, *args)
    return result.exit_code, result.stderr


def problem(status: int, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "status": status} | body,
        headers={"content-type": PROBLEM_JSON} | headers,
    )


DURATION_5 = problem(
    422,
    {
        "title": "Invalid Request",
        "detail": "body.scenes.0.duration: not a duration this model makes: google:3@3"
        " (allowed: 4, 6, 7, 8)",
        "errors": [
            {
                "loc": ["body", "scenes", 0, "duration"],
                "msg": "not a duration this model makes: google:3@3 (allowed: 4, 6, 7, 8)",
                "allowed": [4, 6, 7, 8],
            }
        ],
    },
)
SIZE_640 = problem(
    422,
    {
        "title": "Invalid Request",
        "detail": "body.scenes.0.width: not a size this model makes: google:3@3"
        " (allowed: 1280x720, 720x1280, 1920x1080, 1080x1920)",
        "errors": [
            {
                "loc": ["body", "scenes", 0, "width"],
                "msg": "not a size this model makes: google:3@3"
                " (allowed: 1280x720, 720x1280, 1920x1080, 1080x1920)",
                "allowed": ["1280x720", "720x1280", "1920x1080", "1080x1920"],
            }
        ],
    },
)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(
            DURATION_5,
            "scenes.0.duration: not a duration this model makes: google:3@3 (allowed: 4, 6, 7, 8)",
            id="duration",
        ),
        pytest.param(
            SIZE_640,
            "scenes.0.width: not a size this model makes: google:3@3"
            " (allowed: 1280x720, 720x1280, 1920x1080, 1080x1920)",
            id="size",
        ),
    ],
)
def test_a_refused_scene_shows_what_its_model_allows(
    monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, says: str
) -> None:
    code, stderr = run(monkeypatch, answer, "create", "a cat", "--duration", "5")

    assert code == 2
    assert stderr.splitlines()[1].strip() == says


def test_a_422_that_lists_only_the_first_errors_says_how_many_more_there_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors = [
        {"loc": ["body", "scenes", i, "camera"], "msg": "Extra inputs are not permitted"}
        for i in range(20)
    ]
    answer = problem(
        422,
        {
            "title": "Invalid Request",
            "detail": "body.scenes.0.camera: Extra inputs are not permitted",
            "errors": errors,
            "errors_omitted": 30,
        },
    )

    code, stderr = run(monkeypatch, answer, "create", "a cat")

    assert code == 2
    lines = [line.strip() for line in stderr.splitlines()]
    assert lines[1:] == [
        f"scenes.{i}.camera: Extra inputs are not permitted" for i in range(20)
    ] + ["and 30 more"]


@pytest.mark.parametrize(
    ("answer", "code", "says"),
    [
        pytest.param(
            problem(
                402,
                {
                    "title": "Budget Exceeded",
                    "detail": "the daily budget of $5.00 has $0.10 left; this needs $0.40",
                    "limit": "daily_budget_usd",
                    "limit_value": 5.0,
                    "resets_at": "2026-12-05T00:00:00Z",
                },
                **{"Retry-After": "3600"},
            ),
            7,
            "refused by the limit daily_budget_usd: the daily budget of $5.00 has $0.10 left;"
            " this needs $0.40 (resets at 2026-12-05 00:00 UTC)",
            id="402-budget",
        ),
        pytest.param(
            problem(
                403,
                {
                    "title": "Not Allowed",
                    "detail": "model acme:video@2 is not one this tenant may use",
                    "limit": "allowed_models",
                    "limit_value": ["google:3@3"],
                },
            ),
            7,
            "refused by the limit allowed_models: model acme:video@2 is not one this tenant"
            " may use",
            id="403-not-allowed",
        ),
        pytest.param(
            problem(
                429,
                {
                    "title": "Limit Exceeded",
                    "detail": "3 clips in flight; the limit is 3",
                    "limit": "max_clips_in_flight",
                    "limit_value": 3,
                },
                **{"Retry-After": "30"},
            ),
            8,
            "refused by the limit max_clips_in_flight: 3 clips in flight; the limit is 3;"
            " try again in 30 s",
            id="429-in-flight",
        ),
        pytest.param(
            problem(
                429,
                {"title": "Too Many Requests", "detail": "this key has 24 requests in progress"},
                **{"Retry-After": "1"},
            ),
            8,
            "reelflow is busy or degraded (429); try again in 1 s",
            id="429-requests",
        ),
        pytest.param(
            problem(
                503,
                {"title": "Service Unavailable", "detail": "too busy"},
                **{"Retry-After": "5"},
            ),
            8,
            "reelflow is busy or degraded (503); try again in 5 s",
            id="503",
        ),
    ],
)
def test_a_refusal_by_a_limit_is_not_a_bad_argument_and_a_passing_one_says_try_later(
    monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, code: int, says: str
) -> None:
    exit_code, stderr = run(monkeypatch, answer, "create", "a cat")

    assert exit_code == code
    assert stderr.strip() == f"error: {says}"


TOO_SHORT = problem(
    422,
    {
        "title": "Invalid Request",
        "detail": "body.scenes.0.prompt: must have at least 2 characters besides whitespace",
        "errors": [
            {
                "loc": ["body", "scenes", 0, "prompt"],
                "msg": "must have at least 2 characters besides whitespace",
            }
        ],
    },
)


@pytest.mark.parametrize(
    ("answer", "args", "code"),
    [
        pytest.param(TOO_SHORT, ["create", "x"], 2, id="422"),
        pytest.param(DURATION_5, ["create", "a cat", "--watch"], 2, id="422-watch"),
        pytest.param(
            problem(404, {"title": "Not Found", "detail": "no such project"}),
            ["get", "p1"],
            5,
            id="404",
        ),
        pytest.param(
            problem(
                429, {"title": "Too Many Requests", "detail": "slow down"}, **{"retry-after": "3"}
            ),
            ["list"],
            8,
            id="429",
        ),
    ],
)
def test_with_json_a_refusal_is_the_apis_problem_json_on_one_line_of_stderr(
    monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, args: list[str], code: int
) -> None:
    exit_code, stderr = run(monkeypatch, answer, *args, "--json")

    assert exit_code == code
    assert stderr.endswith("\n")
    assert stderr.count("\n") == 1, stderr
    assert json.loads(stderr) == answer.json()


def test_with_json_a_local_error_is_a_title_and_a_detail_on_one_line_of_stderr(
    tmp_path: Path,
) -> None:
    env = {"REELFLOW_API_KEY": "", "REELFLOW_CONFIG": str(tmp_path / "none.toml")}

    result = CliRunner().invoke(cli.app, ["list", "--json"], env=env)

    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    said = json.loads(result.stderr)
    assert said["title"] == "Not authorized"
    assert said["detail"].startswith("no API key: set REELFLOW_API_KEY")
    # without --json, text as before
    text = CliRunner().invoke(cli.app, ["list"], env=env)
    assert (text.exit_code, text.stderr.startswith("error: no API key")) == (4, True)


def test_with_json_an_answer_that_is_no_problem_json_is_told_as_a_local_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = httpx.Response(502, text="<html>Bad Gateway</html>")

    exit_code, stderr = run(monkeypatch, proxy, "list", "--json")

    assert exit_code == 6
    assert json.loads(stderr) == {"title": "Error", "detail": "reelflow answered 502: Bad Gateway"}


def test_the_help_names_every_exit_code() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "300"})

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert (
        "Exit codes: 0 ok, 1 clips failed, 2 bad argument, 3 server unreachable, 4 API key"
        " missing or refused, 5 no such project, 6 other server error, 7 refused by a limit"
        " or budget, 8 busy or too much in flight: try again later. 141 (128 + SIGPIPE): the"
        " output's reader went away (| head)."
    ) in text


class _ClosedPipe(io.StringIO):
    """A stdout whose reader went away (``| head``): every write fails."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_ends_the_command_with_141_and_no_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "out", type(cli.out)(file=_ClosedPipe()))
    listed = httpx.Response(200, json={"items": [], "next_cursor": None})

    exit_code, stderr = run(monkeypatch, listed, "list")

    assert exit_code == 141  # not 1: that says clips failed
    assert stderr == ""


@pytest.mark.parametrize(
    "url",
    [
        "not-a-url",
        "127.0.0.1:8000",
        "ftp://example.com",
        "http://",
        "http://host:port",
        "http://[::1",
    ],
)
def test_a_url_that_is_none_is_a_bad_argument_saying_what_one_looks_like(url: str) -> None:
    env = {"REELFLOW_URL": url, "REELFLOW_API_KEY": "rf_test"}

    result = CliRunner().invoke(cli.app, ["list"], env=env)

    assert result.exit_code == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert f"REELFLOW_URL is '{url}', not a server URL: it must look like http://HOST:PORT" in said


def test_a_url_in_the_config_file_that_is_none_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('url = "localhost"\napi_key = "rf_test"\n')

    result = CliRunner().invoke(
        cli.app, ["list"], env={"REELFLOW_URL": "", "REELFLOW_CONFIG": str(config)}
    )

    assert result.exit_code == 2, result.stderr
    assert f"url in {config} is 'localhost', not a server URL" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("create", ["{PROMPT}...", "--title TITLE", "--model MODEL", "--duration SECONDS"]),
        ("list", ["--status STATUS", "--limit N", "--cursor CURSOR"]),
        ("usage", ["--month YYYY-MM"]),
        ("download", ["{PROJECT_ID} {DIRECTORY}"]),
    ],
)
def test_the_help_names_values_as_a_person_would_not_by_python_type(
    monkeypatch: pytest.MonkeyPatch, command: str, shown: list[str]
) -> None:
    monkeypatch.setattr(cli.app, "rich_markup_mode", None)  # plain text, as in a pipe
    result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    for words in shown:
        assert words in result.stdout
    options = result.stdout.partition("Options")[2]
    assert not re.search(r"<(str|int|float|int range|float range)>", options), options
