"""Fixtures shared by every test; each lives in ``tests/fixtures/``."""

pytest_plugins = ["tests.fixtures.infra", "tests.fixtures.runware"]
