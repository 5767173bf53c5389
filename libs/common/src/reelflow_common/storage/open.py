"""The storage the settings name, as an async context manager (built in each ``main()``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from reelflow_common.settings import StorageSettings
from reelflow_common.storage.base import VideoStorage
from reelflow_common.storage.local import LocalStorage


@asynccontextmanager
async def open_storage(settings: StorageSettings) -> AsyncIterator[VideoStorage | None]:
    """The configured storage; None when videos are not kept (``storage_backend=none``)."""
    if settings.storage_backend == "local":
        yield LocalStorage(Path(settings.storage_dir))
    elif settings.storage_backend == "s3":
        from reelflow_common.storage.s3 import S3Storage  # botocore only where S3 is used

        async with S3Storage.open(settings) as storage:
            yield storage
    else:
        yield None
