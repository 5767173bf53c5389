"""The S3-compatible backend (aiobotocore): a private bucket, read through presigned URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from reelflow_common.settings import StorageSettings
from reelflow_common.storage.base import MP4, Delivery, Redirect, StorageError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

#: transport and server errors of botocore and of the HTTP layer under it
_FAILURES = (BotoCoreError, ClientError, OSError)


class S3Storage:
    """Videos as objects of one private bucket; clients get a presigned GET, never the bucket."""

    def __init__(self, client: S3Client, bucket: str, *, presign_ttl_s: float) -> None:
        self._client = client
        self._bucket = bucket
        self._presign_ttl_s = int(presign_ttl_s)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: StorageSettings) -> AsyncIterator[S3Storage]:
        """The client for ``settings``, closed on exit; nothing is contacted until first use."""
        assert settings.s3_bucket is not None  # StorageSettings checks it for the s3 backend
        key_id = settings.s3_access_key_id
        secret = settings.s3_secret_access_key
        config = AioConfig(
            connect_timeout=10,
            read_timeout=settings.copy_timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
            # Path-style addressing works with every S3-compatible server, custom endpoints too.
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
        )
        async with get_session().create_client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=None if key_id is None else key_id.get_secret_value(),
            aws_secret_access_key=None if secret is None else secret.get_secret_value(),
            config=config,
        ) as client:
            yield cls(client, settings.s3_bucket, presign_ttl_s=settings.s3_presign_ttl_s)

    async def put(self, key: str, source: Path, *, content_type: str = MP4) -> None:
        try:
            with source.open("rb") as body:
                await self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
                )
        except _FAILURES as exc:
            raise StorageError(f"cannot put {key}: {exc}") from exc

    async def size(self, key: str) -> int | None:
        try:
            head = await self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot head {key}: {exc}") from exc
        except _FAILURES as exc:
            raise StorageError(f"cannot head {key}: {exc}") from exc
        return int(head["ContentLength"])

    async def delivery(self, key: str, *, download_name: str | None = None) -> Delivery | None:
        # No existence check: a presigned URL of a missing object answers 404 by itself,
        # and serving a video then costs the api no call to the bucket.
        params = {"Bucket": self._bucket, "Key": key}
        if download_name is not None:
            # Signed with the rest of the URL: the bucket answers as an attachment of that name.
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        try:
            url = await self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self._presign_ttl_s
            )
        except _FAILURES as exc:  # e.g. no credentials found: a 503, not a 500
            raise StorageError(f"cannot presign {key}: {exc}") from exc
        return Redirect(url)
