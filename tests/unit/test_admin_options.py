"""reelflow-admin's options are checked as the command line is read: a value no command
could use is a usage error (exit 2) naming the option, before anything is connected to."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reelflow_common.admin.cli import _command, _limit_changes, build_parser
from reelflow_common.runware.catalogue import MODEL_RULES

REFUSED = [
    ["tenant", "limits", "T", "--daily-budget-usd", "-5"],
    ["tenant", "limits", "T", "--monthly-budget-usd", "-0.01"],
    ["tenant", "limits", "T", "--daily-budget-usd", "nan"],
    ["tenant", "limits", "T", "--monthly-budget-usd", "inf"],
    ["tenant", "limits", "T", "--max-clips-in-flight", "0"],
    ["tenant", "limits", "T", "--max-scenes-per-project", "-3"],
    ["tenant", "limits", "T", "--max-clips-in-flight", "2.5"],
    ["tenant", "create", "acme", "--daily-budget-usd", "-5"],
    ["tenant", "create", "acme", "--max-clips-in-flight", "-1"],
    ["tenant", "limits", "T", "--allowed-models", "google:3@3,kling"],
    ["tenant", "limits", "T", "--allowed-models", "klingai:5"],
    ["tenant", "create", "acme", "--allowed-models", "veo 3"],
    ["dlq", "list", "--peek", "-1"],
    ["dlq", "requeue", "--queue", "poller.check_clip", "--limit", "0"],
    ["dlq", "requeue", "--queue", "poller.check_clip", "--limit", "-10"],
    ["project", "list", "--tenant", "T", "--limit", "0"],
    ["assets", "list", "--failed", "--limit", "0"],
    ["assets", "retry", "--failed", "--limit", "-1"],
    ["assets", "retry", "P", "--scene", "-1"],
]


@pytest.mark.parametrize("argv", REFUSED, ids=[" ".join(argv) for argv in REFUSED])
def test_a_value_out_of_range_is_a_usage_error_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)

    assert exited.value.code == 2
    err = capsys.readouterr().err
    option = next(word for word in reversed(argv) if word.startswith("--"))
    assert f"argument {option}" in err
    assert repr(argv[-1].split(",")[-1]) in err  # the value given (the wrong one), said back
    assert "ValidationError" not in err


def test_values_in_range_and_none_are_taken() -> None:
    args = build_parser().parse_args(
        [
            "tenant",
            "limits",
            "T",
            "--daily-budget-usd",
            "0",
            "--monthly-budget-usd",
            "12.5",
            "--max-clips-in-flight",
            "1",
            "--max-scenes-per-project",
            "none",
        ]
    )
    assert (args.daily_budget_usd, args.monthly_budget_usd) == (0.0, 12.5)
    assert args.max_clips_in_flight == 1
    assert args.max_scenes_per_project is not None  # "none": remove the limit
    assert build_parser().parse_args(["dlq", "list", "--peek", "0"]).peek == 0


def test_allowed_models_not_known_to_reelflow_are_taken_with_a_warning_naming_the_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # kling:5@3 for klingai:5@3: Runware may know a model reelflow does not, so it is
    # set, but said: a typo would lock the tenant out of the model meant.
    args = build_parser().parse_args(
        ["tenant", "limits", "T", "--allowed-models", "google:3@3,kling:5@3"]
    )
    assert _limit_changes(args) == {"allowed_models": ["google:3@3", "kling:5@3"]}
    err = capsys.readouterr().err
    assert "warning" in err
    assert "'kling:5@3'" in err
    assert "'google:3@3'" not in err
    assert all(model in err for model in MODEL_RULES)  # the known ones, to compare with

    args = build_parser().parse_args(
        ["tenant", "create", "acme", "--allowed-models", "google:3@3,klingai:5@3"]
    )
    assert _limit_changes(args) == {"allowed_models": ["google:3@3", "klingai:5@3"]}
    assert capsys.readouterr().err == ""


def test_a_malformed_model_is_refused_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tenant", "limits", "T", "--allowed-models", "kling,x:y@z"])
    err = capsys.readouterr().err
    assert "'kling': not a Runware AIR id, provider:model@version" in err
    assert "klingai:5@3" in err


def test_the_dlq_commands_help_says_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, default in ((["dlq", "requeue"], "default: 100"), (["dlq", "list"], "default: 3")):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*argv, "--help"])
        assert default in " ".join(capsys.readouterr().out.split()), argv


def test_hints_name_the_command_as_it_can_be_typed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make run's users run .venv/bin/reelflow-admin: a hint saying a bare reelflow-admin
    # fails when copied there ("command not found").
    script = tmp_path / ".venv" / "bin" / "reelflow-admin"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "argv", [str(script), "tenant", "list"])
    assert _command() == ".venv/bin/reelflow-admin"
    monkeypatch.chdir(script.parent)
    assert _command() == "./reelflow-admin"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _command() == str(script.resolve())
    # On PATH (an image, an installed package): the bare name.
    monkeypatch.setenv("PATH", str(script.parent))
    assert _command() == "reelflow-admin"
    # Not the console script (python -m, a test): the name.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert _command() == "reelflow-admin"
