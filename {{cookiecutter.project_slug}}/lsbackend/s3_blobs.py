"""The blob interface (``blobs.Blobs``) on S3-compatible object storage (``MODEL_STORE=s3://bucket/prefix``).

What S3 needs beyond "bytes under keys", kept here so the store above is the
same for both media:

- ``stamp`` (called on every /predict) asks the store at most once a second
  per process and key set (``STAMP_SECONDS``); while the store is unreachable
  it answers the last stamp, so the cached model keeps serving;
- ``lock`` is a lease object created with ``If-None-Match: *``, renewed with
  ``If-Match`` by its holder, taken over when it expired (``LEASE_SECONDS``,
  judged by the store's clock): a killed holder frees it. This needs
  conditional writes: AWS S3 (since 2024-11), MinIO, Ceph RGW, Cloudflare R2
  and moto have them;
- ``patiently`` retries while the store is unreachable (``SAVE_RETRY_SECONDS``),
  so a model trained for hours waits for an outage to end instead of being lost.

Why boto3 (with botocore, s3transfer, jmespath, python-dateutil, urllib3):
it is AWS's own, released weekly, and it brings the whole AWS credential
chain (environment variables, ``AWS_PROFILE`` files, SSO, IRSA web identity
on Kubernetes, ECS and EC2 instance roles) and the conditional-write
parameters; moto, which the tests run as a real server, implements the same
API. Its cost is size (37 MB installed), so it lives in ``requirements-s3.txt``
and is imported only when ``MODEL_STORE`` asks for S3 (``s3_client.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .blobs import tag_number
from .errors import StorageError, StorageWriteError
from .s3_client import error_code, error_message, from_the_client, is_missing, s3_client, status_code
from .s3_lease import Lease

log = logging.getLogger(__name__)

STAMP_SECONDS = 1.0  # how stale a replica's view of CURRENT may be: a new version serves within ~2 s
FETCH_THREADS = 16  # objects read at once when collecting annotations
SAVE_RETRY_SECONDS = 300.0  # how long a trained model waits for an unreachable store before its training fails
T = TypeVar("T")


class StoreUnavailable(StorageWriteError):
    """The object store refused or could not be reached; the message names MODEL_STORE, the endpoint and the fix.

    A ``StorageWriteError`` so that the server answers 503 with this message, as for an unwritable MODEL_DIR.
    """

    def __init__(self, store: S3Blobs, what: str, exc: BaseException) -> None:  # noqa: D107
        code = error_code(exc)
        why = f"{code}: {error_message(exc)}" if code else f"{type(exc).__name__}: {exc}"
        denied = code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status_code(exc) == 403
        # a missing object is answered as None before this: a 404 here is the bucket's
        missing = code == "NoSuchBucket" or status_code(exc) == 404
        self.kind = "denied" if denied else "missing" if missing else "failing" if status_code(exc) else "unreachable"
        self.what = what
        self.fix = {
            "denied": "Give the backend's AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                      "or a role) s3:GetObject, PutObject, DeleteObject and ListBucket on the bucket.",
            "missing": f"Create the bucket {store.bucket!r}, or point MODEL_STORE at an existing one.",
            "failing": "See the object store's log; NotImplemented or InvalidArgument on the training lock means "
                       "the store lacks conditional writes (If-None-Match), which MODEL_STORE needs (see the README).",
            "unreachable": "Check that the object store is up and S3_ENDPOINT_URL points at it; the backend "
                           "recovers by itself once it answers (predictions keep using the loaded model).",
        }[self.kind]
        state = "answering with an error" if self.kind == "failing" else self.kind
        RuntimeError.__init__(self, f"MODEL_STORE {store.uri} ({store.where}) is {state}: cannot {what} "
                                    f"({why[:200]})")


class S3Blobs:
    """Objects under one bucket prefix; one boto3 client (thread-safe) per process, and a quick one."""

    medium = "object"
    unreachable: tuple[type[Exception], ...] = (StorageError,)

    def __init__(self, uri: str, bucket: str, prefix: str, endpoint_url: str, lease_seconds: float | None = None):
        self.uri, self.bucket, self.prefix = uri, bucket, prefix
        self.name = f"MODEL_STORE {uri}"
        self.where = f"S3_ENDPOINT_URL={endpoint_url}" if endpoint_url else "AWS S3"
        self.lease_seconds = lease_seconds
        # read_timeout bounds each socket read, not a whole (large) model download
        needed_by = f"MODEL_STORE={uri}"
        self.client = s3_client(endpoint_url, connect_timeout=3, read_timeout=10, attempts=2,
                                needed_by=needed_by, pool_connections=FETCH_THREADS)
        # checks on the request path (stamp, readiness) give up fast: serving goes on without them
        self.quick = s3_client(endpoint_url, connect_timeout=1, read_timeout=3, attempts=1,
                               needed_by=needed_by, pool_connections=FETCH_THREADS)
        self._stamps: dict[tuple[str, ...], tuple[float, tuple[int, ...]]] = {}  # keys -> (checked at, stamp)
        self._refreshing: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        self.unreachable_now = False  # the last look at the store failed
        self.check()  # a wrong bucket, endpoint or credentials stop the backend at start-up, naming the fix

    @contextlib.contextmanager
    def io(self, what: str) -> Iterator[None]:
        """Turn a botocore error of the block into ``StoreUnavailable`` saying what was being done."""
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            if not from_the_client(exc):
                raise
            raise StoreUnavailable(self, what, exc) from exc

    def check(self) -> None:
        """Readiness: the bucket answers (one HEAD request, no retries)."""
        try:
            self.quick.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 (botocore's errors have no common base with ClientError)
            raise StoreUnavailable(self, "reach the bucket", exc) from None

    def get(self, key: str, what: str) -> bytes | None:
        with self.io(f"read {what}"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
            except Exception as exc:
                if is_missing(exc):
                    return None
                raise

    def get_many(self, keys: list[str], what: str) -> list[bytes | None]:
        """Several objects read at once (``FETCH_THREADS``), in the order of ``keys``."""
        if len(keys) <= 1:
            return [self.get(k, what) for k in keys]
        with ThreadPoolExecutor(min(FETCH_THREADS, len(keys))) as pool:
            return list(pool.map(lambda k: self.get(k, what), keys))

    def put(self, key: str, data: bytes, what: str, **extra: Any) -> str:
        """Write an object whole (one PUT: readers see the old or the new one); return its ETag."""
        with self.io(f"write {what}"):
            etag = self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **extra)["ETag"]
        with self._lock:  # this process changed it: look again at the next stamp
            for keys in [k for k in self._stamps if key in k]:
                del self._stamps[keys]
        return etag

    def delete(self, keys: list[str], what: str) -> None:
        with self.io(f"delete {what}"):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": self.prefix + k} for k in keys[start:start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def list(self, prefix: str, what: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size (listing is strongly consistent on S3 since 2020)."""
        found: dict[str, int] = {}
        cut = len(self.prefix)
        with self.io(f"list {what}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + prefix)
            for page in pages:
                found.update((item["Key"][cut:], item["Size"]) for item in page.get("Contents", []))
        return found

    def head(self, key: str, client: Any = None) -> dict | None:
        try:
            return (client or self.client).head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def tag(self, key: str) -> str | None:
        with self.io(f"read {key}"):
            head = self.head(key)
        return head["ETag"] if head else None

    # --- the stamp cache ----------------------------------------------------------
    def stamp(self, keys: tuple[str, ...]) -> tuple[int, ...]:
        """The keys' ETags as numbers, read from the store at most once per ``STAMP_SECONDS``.

        While the store is unreachable, the last stamp is answered at once (the loaded model keeps
        serving) and the store is asked again in the background, so no /predict waits for a timeout.
        """
        cached = self._stamps.get(keys)
        if cached and time.monotonic() - cached[0] < STAMP_SECONDS:
            return cached[1]
        if cached and (self.unreachable_now or keys in self._refreshing):
            self._refresh_in_background(keys)
            return cached[1]
        fresh = self._refresh(keys, raise_error=cached is None)
        if fresh is not None:
            return fresh
        assert cached is not None  # with nothing cached, _refresh raises rather than answer None
        return cached[1]

    def _refresh(self, keys: tuple[str, ...], raise_error: bool) -> tuple[int, ...] | None:
        try:
            heads = [self.head(key, self.quick) for key in keys]
        except Exception as exc:  # unreachable: serve what is loaded; readiness says why
            if not from_the_client(exc):
                raise
            if not self.unreachable_now:
                log.warning("MODEL_STORE %s: cannot check for a new model version (%s)", self.uri, exc)
            self.unreachable_now = True
            if raise_error:
                raise StoreUnavailable(self, "read the current model version", exc) from None
            cached = self._stamps.get(keys)
            if cached:  # look again in STAMP_SECONDS, not at every request
                self._stamps[keys] = (time.monotonic(), cached[1])
            return None
        if self.unreachable_now:
            log.info("MODEL_STORE %s answers again", self.uri)
        self.unreachable_now = False
        stamp = tuple(tag_number(head["ETag"] if head else None) for head in heads)
        self._stamps[keys] = (time.monotonic(), stamp)
        return stamp

    def _refresh_in_background(self, keys: tuple[str, ...]) -> None:
        with self._lock:
            if keys in self._refreshing:
                return
            self._refreshing.add(keys)

        def refresh() -> None:
            try:
                self._refresh(keys, raise_error=False)
            finally:
                with self._lock:
                    self._refreshing.discard(keys)

        threading.Thread(target=refresh, name="stamp-refresh", daemon=True).start()

    # --- leases and retries ----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, what: str) -> Iterator[Lease]:
        """Hold a lease (waits for another holder); it expires ``LEASE_SECONDS`` after we die."""
        lease = Lease(self, key, what, self.lease_seconds)
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()

    def locked(self, key: str) -> bool:
        with self.io("read the training lock"):
            return Lease(self, key, "the training lock", self.lease_seconds).held_by_anyone()

    def patiently(self, call: Callable[[], T], seconds: float | None = None) -> T:
        """``call()``, again while the store is unreachable, for up to ``SAVE_RETRY_SECONDS``."""
        deadline = time.monotonic() + (SAVE_RETRY_SECONDS if seconds is None else seconds)
        pause = 0.5
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                if exc.kind != "unreachable" or time.monotonic() + pause > deadline:
                    raise
                log.warning("%s; trying again in %.0f s", exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
