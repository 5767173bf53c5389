"""A bench run stopped with SIGTERM still stops its stack and deletes its queues."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow_devtools.bench import launcher


class FakeStack:
    def __init__(self, config: object) -> None:
        self.config = config
        self.stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def sigterm_noted() -> Iterator[list[int]]:
    """SIGTERM only noted while the test runs (so a run it would end shows as a failure)."""
    noted: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_during_a_run_ends_it_through_the_teardown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_noted: list[int]
) -> None:
    stacks: list[FakeStack] = []
    deleted: list[FakeStack] = []

    def fake_stack(config: object) -> FakeStack:
        stacks.append(FakeStack(config))
        return stacks[-1]

    monkeypatch.setattr(launcher, "BenchStack", fake_stack)
    monkeypatch.setattr(launcher, "_delete_queues", deleted.append)

    with (
        pytest.raises(SystemExit) as ended,
        launcher.running_stack(launcher.StackConfig(), tmp_path),
    ):
        os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before kill returns

    assert ended.value.code == 128 + signal.SIGTERM
    assert stacks[0].stopped
    assert deleted == stacks
    assert sigterm_noted == []  # the run's own handler took it, not the one from before
    os.kill(os.getpid(), signal.SIGTERM)
    assert sigterm_noted == [signal.SIGTERM]  # and the one from before is back
