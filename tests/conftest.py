"""Fixtures shared by every test; each lives in ``tests/fixtures/``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.scheduler.protocol import Scheduling

pytest_plugins = ["tests.fixtures.infra", "tests.fixtures.runware"]


@pytest.fixture(autouse=True, scope="session")
def uncached_loggers() -> Iterator[None]:
    """In tests, structlog never caches a logger, so ``capture_logs()`` sees every one.

    A service's ``main()`` run in-process configures logging with
    ``cache_logger_on_first_use=True``; a module logger used then keeps that
    configuration's processors, and a later ``capture_logs()`` (which swaps the
    processors of the current configuration) would see nothing from it.
    """
    configure = structlog.configure

    def without_caching(**settings: Any) -> None:
        configure(**(settings | {"cache_logger_on_first_use": False}))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(structlog, "configure", without_caching)
        yield


#: the two tests that each drive whole stacks hard for minutes (the quick bench and the
#: quick chaos run): under ``make test`` one worker runs them one after the other
_HEAVY_FILES = frozenset({"test_bench.py", "test_chaos.py"})


class _FilesHeavyTogether(LoadFileScheduling):  # type: ignore[misc]  # xdist is untyped
    """``--dist loadfile``, but the quick bench and the quick chaos run are one unit of work.

    A file's tests stay on one worker (a module-scoped stack starts once); the two
    heaviest files go to the same worker, one after the other, so they never compete
    for the machine's two cores (each has wall-clock bounds). xdist's own way to say
    this (``--dist loadgroup`` with ``xdist_group`` marks) rewrites ``Item._nodeid``,
    which pytest 9 no longer has.
    """

    def _split_scope(self, nodeid: str) -> str:
        scope = super()._split_scope(nodeid)
        return "heavy" if scope.rpartition("/")[2] in _HEAVY_FILES else scope


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """``make test``'s scheduler (``--dist loadfile``); any other mode is xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    return _FilesHeavyTogether(config, log)
