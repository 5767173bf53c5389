"""``REELFLOW_SECANTUSD_WITHOUT``: which of the embedded server's fixes it leaves out."""

from __future__ import annotations

import pytest

from reelflow_devtools.secantusd import FIXES, left_out


def test_the_named_fixes_are_left_out() -> None:
    assert left_out("") == frozenset()
    assert left_out(" secantusd_update_copy, secantusd_index_catalog ,") == {
        "secantusd_update_copy",
        "secantusd_index_catalog",
    }


def test_every_fix_is_named_by_its_module() -> None:
    assert [module for module, _, _ in FIXES] == [
        "secantusd_point_lookup",
        "secantusd_read_release",
        "secantusd_index_diff",
        "secantusd_index_catalog",
        "secantusd_update_copy",
        "secantusd_range_bracket",
        "secantusd_profile_level",
    ]


def test_an_unknown_name_stops_the_server_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"no fix named secantusd_typo .*secantusd_update_copy"):
        left_out("secantusd_update_copy,secantusd_typo")
