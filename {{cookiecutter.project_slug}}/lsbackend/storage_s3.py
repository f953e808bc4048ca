"""The model store on S3-compatible object storage (``MODEL_STORE=s3://bucket/prefix``).

Same promises as the local store (``storage.ProjectStore``), so every replica
and training worker shares one project's models, pointer, label config,
extra params, status, recorded annotations and training lock:

- a model is one object (``models/<version>.pkl``, its SHA-256 in the
  object's metadata); a PUT is all or nothing, and ``CURRENT`` is written
  only after it, so a crash mid-save never points at a partial model;
- ``stamp()`` (called on every /predict) reads the store at most once a
  second per process and project (``STAMP_SECONDS``); while the store is
  unreachable it answers the last stamp, so the cached model keeps serving;
- recorded annotations are operations with a unique, time-ordered key
  (``annotations.py``): each webhook writes one small pending object, and
  compaction folds them into segment objects. Every container may hold an
  operation twice: the newest key per annotation wins, so a crash between
  writing a segment and deleting what it merged loses and resurrects nothing;
- the training lock is a lease object created with ``If-None-Match: *``,
  renewed with ``If-Match`` by its holder, taken over when it expired
  (``LEASE_SECONDS``; judged by the store's clock): a killed holder frees it.
  This needs conditional writes: AWS S3 (since 2024-11), MinIO, Ceph RGW,
  Cloudflare R2 and moto have them.

Why boto3 (with botocore, s3transfer, jmespath, python-dateutil, urllib3):
it is AWS's own, released weekly, and it brings the whole AWS credential
chain (environment variables, ``AWS_PROFILE`` files, SSO, IRSA web identity
on Kubernetes, ECS and EC2 instance roles) and the conditional-write
parameters; moto, which the tests run as a real server, implements the same
API. Its cost is size: 37 MB installed (botocore's service models are 32 of
them) against 21 MB for minio (whose pycryptodome is 16 MB), so it lives
in ``requirements-s3.txt`` and is imported only when ``MODEL_STORE`` asks
for S3: the default install and image never load it.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import os
import pickle
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from .annotations import AnnotationLog
from .errors import StorageError, StorageWriteError
from .ids import MAX_ID, PROJECT_ID, annotation_id
from .s3_client import error_code, error_message, from_the_client, is_conflict, is_missing, s3_client, status_code
from .versions import VersionFallback, version_number

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

STAMP_SECONDS = 1.0  # how stale a replica's view of CURRENT may be: a new version serves within ~2 s
LEASE_SECONDS = 30.0  # a training lock whose holder stopped renewing is free after this
PENDING_BEFORE_COMPACT = 100  # annotations a process records before it compacts the pending objects
FETCH_THREADS = 16  # objects read at once when collecting annotations
SAVE_RETRY_SECONDS = 300.0  # how long a trained model waits for an unreachable store before its training fails
T = TypeVar("T")


class StoreUnavailable(StorageWriteError):
    """The object store refused or could not be reached; the message names MODEL_STORE, the endpoint and the fix.

    A ``StorageWriteError`` so that the server answers 503 with this message, as for an unwritable MODEL_DIR.
    """

    def __init__(self, store: S3ModelStore, what: str, exc: BaseException) -> None:  # noqa: D107
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


def retrying(call: Callable[[], T], seconds: float | None = None) -> T:
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


class S3ModelStore:
    """All projects under one bucket prefix; one boto3 client (thread-safe) per process."""

    def __init__(self, settings: Settings, lease_seconds: float | None = None) -> None:
        location = settings.s3_location
        assert location is not None, "S3ModelStore needs MODEL_STORE=s3://..."
        self.bucket, self.prefix = location
        self.uri = settings.model_store
        self.where = f"S3_ENDPOINT_URL={settings.s3_endpoint_url}" if settings.s3_endpoint_url else "AWS S3"
        self.keep_versions = settings.keep_versions
        self.lease_seconds = lease_seconds or LEASE_SECONDS
        # read_timeout bounds each socket read, not a whole (large) model download
        needed_by = f"MODEL_STORE={self.uri}"
        self.client = s3_client(settings.s3_endpoint_url, connect_timeout=3, read_timeout=10, attempts=2,
                                needed_by=needed_by, pool_connections=FETCH_THREADS)
        # checks on the request path (stamp, readiness) give up fast: serving goes on without them
        self.quick = s3_client(settings.s3_endpoint_url, connect_timeout=1, read_timeout=3, attempts=1,
                               needed_by=needed_by, pool_connections=FETCH_THREADS)
        self._stamps: dict[str, tuple[float, tuple[int, int]]] = {}  # project -> (checked at, stamp)
        self._refreshing: set[str] = set()
        self.unreachable = False  # the last look at the store failed
        self._saved_since_compact: dict[str, int] = {}
        self._compacting: set[str] = set()
        self.summaries: dict[str, dict[int, tuple[str, bool]]] = {}  # annotation objects' summaries, by key
        self.summary_lock = threading.Lock()
        self._lock = threading.Lock()
        self.check()  # a wrong bucket, endpoint or credentials stop the backend at start-up, naming the fix

    def project(self, project: str) -> S3ProjectStore:
        return S3ProjectStore(self, project)

    def check(self) -> None:
        """Readiness: the bucket answers (one HEAD request, no retries)."""
        try:
            self.quick.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 (botocore's errors have no common base with ClientError)
            raise StoreUnavailable(self, "reach the bucket", exc) from None

    def note_setup(self, project: str) -> None:
        """Remember the project of the latest /setup, for every replica (/setup runs often: written on change)."""
        if self.last_setup() != project:
            self.put(f"{self.prefix}last_setup", project.encode(), "the project set up last")

    def last_setup(self) -> str | None:
        data = self.get(f"{self.prefix}last_setup", "the project set up last")
        return data.decode("utf-8").strip() or None if data else None

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

    # --- objects ------------------------------------------------------------
    def get(self, key: str, what: str) -> bytes | None:
        """An object's bytes, None when it does not exist."""
        with self.io(f"read {what}"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except Exception as exc:
                if is_missing(exc):
                    return None
                raise

    def put(self, key: str, data: bytes, what: str, **extra: Any) -> str:
        """Write an object whole (one PUT: readers see the old or the new one); return its ETag."""
        with self.io(f"write {what}"):
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)["ETag"]

    def head(self, key: str, client: Any = None) -> dict | None:
        try:
            return (client or self.client).head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def keys(self, prefix: str, what: str) -> list[str]:
        """Every key under ``prefix``, sorted (listing is strongly consistent on S3 since 2020)."""
        return sorted(self.sizes(prefix, what))

    def sizes(self, prefix: str, what: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes."""
        found: dict[str, int] = {}
        with self.io(f"list {what}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
        return found

    def delete(self, keys: list[str], what: str) -> None:
        with self.io(f"delete {what}"):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start:start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def get_many(self, keys: list[str], what: str) -> list[bytes | None]:
        """Several objects read at once (``FETCH_THREADS``), in the order of ``keys``."""
        if len(keys) <= 1:
            return [self.get(k, what) for k in keys]
        with ThreadPoolExecutor(min(FETCH_THREADS, len(keys))) as pool:
            return list(pool.map(lambda k: self.get(k, what), keys))

    # --- the pointer cache ------------------------------------------------------
    def stamp(self, store: S3ProjectStore) -> tuple[int, int]:
        """``store``'s stamp, read from the store at most once per ``STAMP_SECONDS``.

        While the store is unreachable, the last stamp is answered at once (the loaded model keeps
        serving) and the store is asked again in the background, so no /predict waits for a timeout.
        """
        cached = self._stamps.get(store.project)
        if cached and time.monotonic() - cached[0] < STAMP_SECONDS:
            return cached[1]
        if cached and (self.unreachable or store.project in self._refreshing):
            self._refresh_in_background(store)
            return cached[1]
        fresh = self._refresh(store, raise_error=cached is None)
        if fresh is None:
            assert cached is not None  # with nothing cached, _refresh raises rather than answer None
            return cached[1]
        return fresh

    def _refresh(self, store: S3ProjectStore, raise_error: bool) -> tuple[int, int] | None:
        try:
            stamp = store.fresh_stamp()
        except Exception as exc:  # unreachable: serve what is loaded; readiness says why
            if not from_the_client(exc):
                raise
            if not self.unreachable:
                log.warning("MODEL_STORE %s: cannot check for a new model version (%s)", self.uri, exc)
            self.unreachable = True
            if raise_error:
                raise StoreUnavailable(self, "read the current model version", exc) from None
            cached = self._stamps.get(store.project)
            if cached:  # look again in STAMP_SECONDS, not at every request
                self._stamps[store.project] = (time.monotonic(), cached[1])
            return None
        if self.unreachable:
            log.info("MODEL_STORE %s answers again", self.uri)
        self.unreachable = False
        self._stamps[store.project] = (time.monotonic(), stamp)
        return stamp

    def _refresh_in_background(self, store: S3ProjectStore) -> None:
        with self._lock:
            if store.project in self._refreshing:
                return
            self._refreshing.add(store.project)

        def refresh() -> None:
            try:
                self._refresh(store, raise_error=False)
            finally:
                with self._lock:
                    self._refreshing.discard(store.project)

        threading.Thread(target=refresh, name=f"stamp-{store.project}", daemon=True).start()

    def forget_stamp(self, project: str) -> None:
        """This process moved the pointer itself: look again at the next request."""
        self._stamps.pop(project, None)

    # --- compaction bookkeeping ---------------------------------------------------
    def saved_annotation(self, store: S3ProjectStore) -> None:
        """Count this process's pending writes; every ``PENDING_BEFORE_COMPACT``, compact in the background."""
        with self._lock:
            count = self._saved_since_compact.get(store.project, 0) + 1
            self._saved_since_compact[store.project] = count
            if count < PENDING_BEFORE_COMPACT or store.project in self._compacting:
                return
            self._saved_since_compact[store.project] = 0
            self._compacting.add(store.project)
        threading.Thread(target=self._compact, args=(store,), name=f"compact-{store.project}", daemon=True).start()

    def _compact(self, store: S3ProjectStore) -> None:
        """Compact; again while webhooks recorded another ``PENDING_BEFORE_COMPACT`` meanwhile (a burst)."""
        while True:
            try:
                store.annotation_log().compact(merge_all=False)
            except Exception:  # noqa: BLE001 (a later compaction or training retries; nothing is lost)
                log.exception("project %s: compacting recorded annotations failed", store.project)
                again = False
            else:
                with self._lock:
                    again = self._saved_since_compact.get(store.project, 0) >= PENDING_BEFORE_COMPACT
                    if again:
                        self._saved_since_compact[store.project] = 0
            if not again:
                with self._lock:
                    self._compacting.discard(store.project)
                return


def _etag_number(head: dict | None) -> int:
    """An object's ETag as a number for a stamp; 0 when there is no object."""
    if head is None:
        return 0
    return int(hashlib.blake2b(head["ETag"].encode(), digest_size=7).hexdigest(), 16)


class S3ProjectStore(VersionFallback):
    """One project's objects under ``<prefix>projects/<id>/`` (the same names as the local store's files)."""

    MEDIUM = "object"
    UNREACHABLE = (StorageError,)

    def __init__(self, store: S3ModelStore, project: str) -> None:
        if not PROJECT_ID.fullmatch(project):  # the id names a key prefix: never let it climb out
            raise ValueError(f"project {project[:40]!r} is not a Label Studio project id")
        self.s = store
        self.project = project
        self.base = f"{store.prefix}projects/{project}/"
        self._lease: Lease | None = None

    def key(self, name: str) -> str:
        return self.base + name

    # --- models -----------------------------------------------------------
    def stamp(self) -> tuple[int, int]:
        """Changes when CURRENT or the extra params change; cached per process (see ``S3ModelStore.stamp``)."""
        return self.s.stamp(self)

    def fresh_stamp(self) -> tuple[int, int]:
        return (_etag_number(self.s.head(self.key("CURRENT"), self.s.quick)),
                _etag_number(self.s.head(self.key("extra_params.json"), self.s.quick)))

    def current_version(self) -> str | None:
        data = self.s.get(self.key("CURRENT"), "the current-version pointer")
        return data.decode("utf-8").strip() or None if data else None

    def versions(self) -> list[str]:
        """The kept model versions, newest first by their number."""
        names = [k.rsplit("/", 1)[1][:-4] for k in self.s.keys(self.key("models/"), "the model versions")
                 if k.endswith(".pkl")]
        found = [(version_number(n), n) for n in names]
        return [name for number, name in sorted(found, reverse=True) if number is not None]

    def _verified_bytes(self, version: str) -> bytes:
        """The model object's bytes, checked against the SHA-256 stored with it."""
        with self.s.io(f"read model {version}"):
            try:
                answer = self.s.client.get_object(Bucket=self.s.bucket, Key=self.key(f"models/{version}.pkl"))
            except Exception as exc:
                if is_missing(exc):
                    raise FileNotFoundError(f"model {version} is not in the store") from None
                raise
            data = answer["Body"].read()
        expected = answer.get("Metadata", {}).get("sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("the object differs from what was saved (checksum mismatch)")
        return data

    def _may_load(self, version: str, kept: list[str]) -> bool:
        return version in kept  # an object is never partial: one that is there is whole

    # broken versions: {version: {"error", "etag"}}; an entry counts only while the object is unchanged
    def _read_broken(self) -> dict:
        data = self.s.get(self.key("broken.json"), "the notes on broken models")
        try:
            return json.loads(data) if data else {}
        except json.JSONDecodeError:
            return {}

    def _note(self, version: str, error: object) -> dict:
        with self.s.io(f"read model {version}"):
            head = self.s.head(self.key(f"models/{version}.pkl"))
        return {"error": error, "etag": head["ETag"] if head else None}

    def _save_broken(self, broken: dict[str, dict]) -> None:
        with contextlib.suppress(StorageError):  # only a note: an outage must not stop serving
            self.s.put(self.key("broken.json"), json.dumps(broken).encode(), "the notes on broken models")

    def save_model(self, train_output: dict, current: bool = True) -> str:
        """Save a trained model, then (only then) make it current unless ``current`` is False; return its version.

        A store unreachable for a while (up to ``SAVE_RETRY_SECONDS``) delays the save instead of
        losing a training that may have taken hours.
        """
        data = pickle.dumps(train_output, protocol=5)
        digest = hashlib.sha256(data).hexdigest()
        version = retrying(self._next_version)
        retrying(lambda: self.s.put(self.key(f"models/{version}.pkl"), data, f"model {version}",
                                    Metadata={"sha256": digest}))
        if current:
            retrying(lambda: self._move_pointer(version, f"model {version}"))
        with contextlib.suppress(StorageError):  # old versions go at the next save
            self._prune(keep={version})
        return version

    def _move_pointer(self, version: str, what: str) -> None:
        if self._lease is not None and self._lease.lost:
            raise StorageError(f"MODEL_STORE {self.s.uri}: the training lock of project {self.project} expired "
                               f"while {what} was being saved (another process may train now); not made current")
        self.s.put(self.key("CURRENT"), version.encode(), what)
        self.s.forget_stamp(self.project)

    def _prune(self, keep: set[str]) -> None:
        protected = keep | {self.current_version()}
        old = [v for v in self.versions()[self.s.keep_versions:] if v not in protected]
        if old:
            self.s.delete([self.key(f"models/{v}.pkl") for v in old], "old model versions")

    def _point_at(self, version: str) -> None:
        self._move_pointer(version, f"the pointer to {version}")

    # --- annotations ------------------------------------------------------
    def annotation_log(self) -> AnnotationLog:
        return AnnotationLog(self.s, self.key("annotations/"))

    def save_annotation(self, annotation: dict) -> None:
        number = annotation_id(annotation["id"])
        if number is None:
            raise ValueError(f"annotation id {annotation['id']!r:.40} is not an integer from 0 to {MAX_ID}")
        self.annotation_log().record(number, annotation)
        self.s.saved_annotation(self)

    def delete_annotation(self, annotation_id_: object) -> bool:
        number = annotation_id(annotation_id_)
        if number is None:
            return False
        return self.annotation_log().forget(number)

    def annotations(self) -> Iterator[dict]:
        """Every recorded annotation, read in a few requests; compacts what it read (see ``annotations.py``)."""
        yield from self.annotation_log().collect()

    def count_annotations(self) -> int:
        return self.annotation_log().count()

    # --- label config, extra params and training status ---------------------
    def _text(self, name: str, what: str) -> str | None:
        data = self.s.get(self.key(name), what)
        return None if data is None else data.decode("utf-8", "replace")

    def save_label_config(self, xml: str) -> None:
        if self.label_config() != xml:  # /setup runs before every batch: write only on change
            self.s.put(self.key("label_config.xml"), xml.encode("utf-8", "replace"), "the labeling config")

    def label_config(self) -> str | None:
        return self._text("label_config.xml", "the labeling config")

    def save_extra_params(self, params: dict) -> None:
        if params != self.extra_params():
            self.s.put(self.key("extra_params.json"), json.dumps(params).encode(), "the extra params")
            self.s.forget_stamp(self.project)

    def extra_params(self) -> dict:
        try:
            found = json.loads(self._text("extra_params.json", "the extra params") or "{}")
        except json.JSONDecodeError:
            return {}
        return found if isinstance(found, dict) else {}

    def save_status(self, status: dict) -> None:
        self.s.put(self.key("training.json"), json.dumps(status).encode(), "the training status")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self._text("training.json", "the training status") or '{"state": "idle"}')
        except json.JSONDecodeError:
            return {"state": "idle"}

    def save_evaluations(self, evaluations: dict[str, dict]) -> None:
        self.s.put(self.key("evaluations.json"), json.dumps(evaluations).encode(), "the evaluations")

    def evaluations(self) -> dict[str, dict]:
        try:
            found = json.loads(self._text("evaluations.json", "the evaluations") or "{}")
        except json.JSONDecodeError:
            return {}
        return found if isinstance(found, dict) else {}

    # --- training lock ----------------------------------------------------
    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the project's lease (waits for another holder); it expires ``LEASE_SECONDS`` after we die."""
        lease = Lease(self.s, self.key("train.lock"), self.project)
        lease.acquire()
        self._lease = lease
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def training_running(self) -> bool:
        with self.s.io("read the training lock"):
            return Lease(self.s, self.key("train.lock"), self.project).held_by_anyone()


class Lease:
    """A lock object on S3: created only if absent, renewed by its holder, free once it is ``lease_seconds`` old.

    Age is the store's clock (the object's Last-Modified against the answer's
    Date header), so replicas with skewed clocks agree on when it expired.
    """

    def __init__(self, store: S3ModelStore, key: str, project: str) -> None:
        self.s, self.key, self.project = store, key, project
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}).encode()

    def acquire(self) -> None:
        while not self._try_once():
            time.sleep(0.25)
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.project}", daemon=True)
        self._renewer.start()

    def _try_once(self) -> bool:
        with self.s.io("take the training lock"):
            try:
                self.etag = self.s.client.put_object(Bucket=self.s.bucket, Key=self.key, Body=self.body,
                                                     IfNoneMatch="*")["ETag"]
                return True
            except Exception as exc:
                if not is_conflict(exc):
                    raise
            head = self.s.head(self.key)
            if head is None or not self._expired(head):
                return False
            try:  # the holder died: take the lease over, unless someone else just did
                self.etag = self.s.client.put_object(Bucket=self.s.bucket, Key=self.key, Body=self.body,
                                                     IfMatch=head["ETag"])["ETag"]
            except Exception as exc:
                if is_conflict(exc) or is_missing(exc):
                    return False
                raise
            log.warning("project %s: took over a training lock whose holder stopped renewing it", self.project)
            return True

    def _expired(self, head: dict) -> bool:
        date = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
        return now - head["LastModified"].timestamp() > self.s.lease_seconds

    def held_by_anyone(self) -> bool:
        head = self.s.head(self.key)
        return head is not None and not self._expired(head)

    def _renew(self) -> None:
        while not self._stop.wait(self.s.lease_seconds / 3):
            try:
                self.etag = self.s.client.put_object(Bucket=self.s.bucket, Key=self.key, Body=self.body,
                                                     IfMatch=self.etag)["ETag"]
            except Exception as exc:  # noqa: BLE001
                if is_conflict(exc) or is_missing(exc):
                    self.lost = True
                    log.error("project %s: lost the training lock (it expired and another process took it)",
                              self.project)
                    return
                log.warning("project %s: cannot renew the training lock yet (%s)", self.project, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost:
            return
        try:  # only our own lease: another holder's (after ours expired) has another ETag
            self.s.client.delete_object(Bucket=self.s.bucket, Key=self.key, IfMatch=self.etag)
        except Exception as exc:  # noqa: BLE001 (unreachable: the lease expires by itself)
            if not (is_conflict(exc) or is_missing(exc)):
                log.warning("project %s: cannot release the training lock (%s); it expires in %.0f s",
                            self.project, exc, self.s.lease_seconds)

