"""``store_cost`` refuses a command line that would measure nothing."""

from __future__ import annotations

import pytest

from reelflow_devtools.store_cost import parse_args


@pytest.mark.parametrize(
    "argv",
    [
        ["--rounds", "0"],
        ["--clips", "0"],
        ["--sizes", ""],
        ["--sizes", "1,,10"],
        ["--sizes", "0,10"],
        ["--sizes", "ten"],
        ["--rounds", "-1"],
    ],
)
def test_a_command_line_that_would_measure_nothing_is_an_argument_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)

    assert exit_.value.code == 2


def test_the_defaults_and_a_list_of_sizes_are_read() -> None:
    assert vars(parse_args([])) == {"clips": 300, "sizes": [1, 10, 50], "rounds": 2}
    assert parse_args(["--sizes", "1,5", "--rounds", "1"]).sizes == [1, 5]
