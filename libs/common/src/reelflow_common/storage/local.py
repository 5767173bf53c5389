"""The local directory backend: the default of ``make run``; the api sends the files itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from reelflow_common.storage.base import MP4, Delivery, LocalFile, StorageError


class LocalStorage:
    """Videos as files under ``root``; a write lands whole (a temporary file, then a rename)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        # Keys are built by reelflow, but a path outside the root is never served or written.
        if not path.is_relative_to(self._root):
            raise ValueError(f"key outside the storage directory: {key!r}")
        return path

    async def put(self, key: str, source: Path, *, content_type: str = MP4) -> None:
        target = self.path(key)
        try:
            await asyncio.to_thread(_copy_whole, source, target)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc

    async def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    async def delivery(self, key: str, *, download_name: str | None = None) -> Delivery | None:
        path = self.path(key)
        return LocalFile(path) if path.is_file() else None


def _copy_whole(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own per write: two puts of one key (a redelivered copy) never
    # share it, and the last rename wins with a whole file.
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    partial = Path(name)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
