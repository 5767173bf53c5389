"""``ProjectStore.record`` refuses arguments it would not honour, before any I/O."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow_common.domain import ClipStatus
from reelflow_common.store import ClipState, ProjectStore, TaskFailed


class NoDatabase:
    """A database the store may name collections of but never reads or writes."""

    def get_collection(self, name: str, **_options: Any) -> NoDatabase:
        return self

    def with_options(self, **_options: Any) -> NoDatabase:
        return self


async def test_only_clip_and_unattended_together_are_refused() -> None:
    """``only_clip``'s finishing write does not mark a settlement owed, and an unattended
    caller (a reconciler's pass) relies on the mark: the combination is refused."""
    store = ProjectStore(NoDatabase())  # type: ignore[arg-type]
    read = ClipState(scene_index=0, task_uuid="t0", status=ClipStatus.PROCESSING)

    with pytest.raises(ValueError, match="only_clip"):
        await store.record(
            "p1", 0, "t0", TaskFailed(code="x", message="y"), only_clip=True, unattended=read
        )
