"""reelflow-admin's options are checked as the command line is read: a value no command
could use is a usage error (exit 2) naming the option, before anything is connected to."""

from __future__ import annotations

import pytest

from reelflow_common.admin.cli import build_parser

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
    assert repr(argv[-1]) in err  # the value given, said back
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
