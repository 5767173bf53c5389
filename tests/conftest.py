"""Fixtures shared by every test; each lives in ``tests/fixtures/``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

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
