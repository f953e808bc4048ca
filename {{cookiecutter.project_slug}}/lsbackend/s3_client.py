"""The S3 client (boto3) and how to read its errors, for the S3 model store and ``s3://`` MODEL_URIs.

boto3 is imported only when a client is made (``requirements-s3.txt``): importing this module costs
nothing on an install without it.
"""

from __future__ import annotations

from typing import Any

from .errors import StorageError


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "")) or str(exc)


def from_the_client(exc: BaseException) -> bool:
    """Whether boto3 raised this (the store refused or is unreachable), not our own code."""
    return type(exc).__module__.split(".")[0] in ("botocore", "boto3", "urllib3", "s3transfer")


def status_code(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound") or status_code(exc) == 404


def is_conflict(exc: BaseException) -> bool:
    """A conditional write lost (412 PreconditionFailed, or AWS's 409 ConditionalRequestConflict: retry)."""
    return status_code(exc) in (409, 412) or error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict")


def s3_client(endpoint_url: str, connect_timeout: float, read_timeout: float, attempts: int, needed_by: str,
              pool_connections: int = 10) -> Any:
    """A boto3 S3 client; credentials and region come from the standard AWS chain.

    ``StorageError`` naming ``needed_by`` and the install command when boto3 is not installed.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StorageError(f"{needed_by} needs boto3, which is not installed: pip install -r requirements-s3.txt "
                           "(or build the image with --build-arg EXTRAS=s3)") from None
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout, max_pool_connections=pool_connections,
                    retries={"total_max_attempts": attempts, "mode": "standard"},
                    s3={"addressing_style": "path"} if endpoint_url else None)
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url or None, config=config,
                          region_name=session.region_name or "us-east-1")
