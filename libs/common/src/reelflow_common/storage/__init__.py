"""reelflow's own copies of finished videos: the storage interface, its backends, signed URLs."""

from reelflow_common.storage.base import (
    MP4,
    Delivery,
    LocalFile,
    Redirect,
    StorageError,
    VideoStorage,
    video_key,
)
from reelflow_common.storage.copy import CopiedVideo, CopyFailed, VideoCopier, check_mp4_head
from reelflow_common.storage.links import VIDEOS_PATH, VideoLinks
from reelflow_common.storage.local import LocalStorage
from reelflow_common.storage.open import open_storage

__all__ = [
    "MP4",
    "VIDEOS_PATH",
    "CopiedVideo",
    "CopyFailed",
    "Delivery",
    "LocalFile",
    "LocalStorage",
    "Redirect",
    "StorageError",
    "VideoCopier",
    "VideoLinks",
    "VideoStorage",
    "check_mp4_head",
    "open_storage",
    "video_key",
]
