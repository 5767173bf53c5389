"""A service raises its soft limit of open files, each socket being one."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from reelflow_common.openfiles import raise_open_files

LOW = 256  # below what the tests' own process needs at the most


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """The soft limit lowered as a container runtime may leave it; the hard one as it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 4096:
        pytest.skip(f"this machine's hard limit of open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_what_is_wanted_and_never_lowered(low_soft_limit: int) -> None:
    assert raise_open_files(4096) == 4096
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 4096

    assert raise_open_files(1024) == 4096  # never lowered
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 4096


def test_without_a_figure_the_soft_limit_is_raised_to_the_hard_one(low_soft_limit: int) -> None:
    assert raise_open_files() == low_soft_limit
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == low_soft_limit
