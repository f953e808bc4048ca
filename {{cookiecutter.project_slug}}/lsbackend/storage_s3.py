"""The model store on S3-compatible object storage (``MODEL_STORE=s3://bucket/prefix``).

The same store as the local one (``blob_store.BlobModelStore``: versions,
pointer, fallback, annotation log, compaction, training lock), over
``s3_blobs.S3Blobs``, so every replica and training worker shares one
project's models, pointer, label config, extra params, status, recorded
annotations and training lock. What only S3 needs (the pointer cache, the
lease, retries while the store is away, boto3) lives in ``s3_blobs.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .blob_store import BlobModelStore
from .s3_blobs import S3Blobs, StoreUnavailable

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["S3ModelStore", "StoreUnavailable"]


class S3ModelStore(BlobModelStore):
    """All projects under one bucket prefix; one boto3 client (thread-safe) per process."""

    blobs: S3Blobs

    def __init__(self, settings: Settings, lease_seconds: float | None = None) -> None:
        location = settings.s3_location
        assert location is not None, "S3ModelStore needs MODEL_STORE=s3://..."
        bucket, prefix = location
        super().__init__(S3Blobs(settings.model_store, bucket, prefix, settings.s3_endpoint_url, lease_seconds),
                         settings.keep_versions)
        self.uri, self.bucket, self.prefix = settings.model_store, bucket, prefix
