"""Start from existing weights: fetch ``MODEL_URI`` once, check it, and load it in the background.

A project without a trained model of its own predicts with the pretrained one,
under the version ``pretrained-<first 12 hex digits of its SHA-256>``. Loading a
big model can take longer than Label Studio waits for ``/setup`` (3 s), so each
process loads it in a background thread: ``/health`` and ``/setup`` answer at
once, and ``/predict`` answers ``503 Model is loading ...`` until it is ready.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import StorageError, Unavailable
from .s3_client import error_code, from_the_client, s3_client
from .storage import PretrainedStore

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
#: File endings kept on the cached copy, so ``load_pretrained`` can tell a format by its suffix.
KNOWN_SUFFIXES = {".onnx", ".joblib", ".pkl", ".pickle"}


class PretrainedError(Unavailable):
    """``MODEL_URI`` cannot be used; the message names the problem and the fix."""


class ModelLoading(Unavailable):
    """The pretrained model is still being fetched or loaded; ask again shortly."""

    retry_after = 5


def version_of(sha256: str) -> str:
    return f"pretrained-{sha256[:12]}"


def shown(uri: str) -> str:
    """The URI without its query string and password, which may hold a token; for messages and logs."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def fetch(uri: str, store: PretrainedStore, max_bytes: int, expected_sha256: str = "",
          timeout: float = 60.0, s3_endpoint_url: str = "") -> dict:
    """The cached artifact for ``uri``, downloading or copying it first if needed (once for all processes).

    ``s3_endpoint_url`` is the S3-compatible server an ``s3://`` URI is on (empty: AWS S3).
    """
    expected = expected_sha256.strip().lower()
    with store.lock():
        record = store.record(uri)
        if record and (not expected or record["sha256"] == expected):
            return record
        download = store.temporary()
        try:
            sha256, size = _copy(uri, download, max_bytes, timeout, s3_endpoint_url)
            if expected and sha256 != expected:
                raise PretrainedError(
                    f"MODEL_URI {shown(uri)} has SHA-256 {sha256}, but MODEL_SHA256 is {expected}: "
                    "the file changed or the digest is wrong"
                )
            suffix = Path(urllib.parse.urlsplit(uri).path).suffix.lower()
            record = store.keep(download, uri, sha256, size, suffix if suffix in KNOWN_SUFFIXES else "")
            log.info("fetched MODEL_URI %s: %d bytes, sha256 %s", shown(uri), size, sha256)
            return record
        finally:
            download.unlink(missing_ok=True)


def _copy(uri: str, into: Path, max_bytes: int, timeout: float, s3_endpoint_url: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with contextlib.closing(_open(uri, max_bytes, timeout, s3_endpoint_url)) as source, open(into, "wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(uri, max_bytes)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _too_large(uri: str, max_bytes: int) -> PretrainedError:
    return PretrainedError(f"MODEL_URI {shown(uri)} is larger than {max_bytes // (1024 * 1024)} MB; "
                           "raise MODEL_MAX_MB if that is expected")


def _open(uri: str, max_bytes: int, timeout: float, s3_endpoint_url: str = "") -> BinaryIO:
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme == "s3":
        return _open_s3(uri, max_bytes, timeout, s3_endpoint_url)
    if scheme in ("http", "https"):
        try:
            response = urllib.request.urlopen(urllib.request.Request(uri), timeout=timeout)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as exc:
            raise PretrainedError(f"MODEL_URI {shown(uri)} answered HTTP {exc.code}; check the URL") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PretrainedError(f"cannot download MODEL_URI {shown(uri)} ({reason})") from None
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            response.close()
            raise _too_large(uri, max_bytes)
        return response
    if scheme in ("", "file"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path) if scheme else uri).expanduser()
        try:
            return open(path, "rb")
        except OSError as exc:
            raise PretrainedError(f"MODEL_URI {path} cannot be read ({exc.strerror}); "
                                  "set it to an existing file (inside Docker: a mounted path)") from None
    raise PretrainedError(f"MODEL_URI scheme {scheme}:// is not supported; use a local path, an http(s) URL "
                          "or s3://bucket/key")


def _open_s3(uri: str, max_bytes: int, timeout: float, endpoint_url: str) -> BinaryIO:
    """``s3://bucket/key`` through the S3 store's client (boto3: requirements-s3.txt), with AWS credentials."""
    parts = urllib.parse.urlsplit(uri)
    bucket, key = parts.netloc, urllib.parse.unquote(parts.path).lstrip("/")
    if not bucket or not key:
        raise PretrainedError(f"MODEL_URI {uri} names no object; set it to s3://bucket/path/to/model")
    where = f"S3_ENDPOINT_URL={endpoint_url}" if endpoint_url else "AWS S3"
    try:
        client = s3_client(endpoint_url, timeout, timeout, 3, f"MODEL_URI={uri}")
        answer = client.get_object(Bucket=bucket, Key=key)
    except StorageError as exc:
        raise PretrainedError(str(exc)) from None
    except Exception as exc:
        if not from_the_client(exc):
            raise
        why = error_code(exc) or f"{type(exc).__name__}: {exc}"
        raise PretrainedError(f"cannot fetch MODEL_URI {uri} from {where} ({why}); check the bucket and key, "
                              "S3_ENDPOINT_URL and the AWS credentials") from None
    if answer.get("ContentLength", 0) > max_bytes:
        answer["Body"].close()
        raise _too_large(uri, max_bytes)
    return answer["Body"]


class PretrainedModel:
    """``MODEL_URI`` fetched and turned into a ``train_output`` by the model's ``load_pretrained``, in a thread.

    ``get()`` answers ``(version, train_output)`` once ready, raises ``ModelLoading`` before, and
    ``PretrainedError`` when fetching or loading failed (the reason says why).
    """

    def __init__(self, uri: str, store: PretrainedStore, load: Callable[[Path], dict], max_bytes: int,
                 expected_sha256: str = "", timeout: float = 60.0, s3_endpoint_url: str = "") -> None:
        self.uri = uri
        known = store.record(uri)  # after a restart the version is known before the file is loaded again
        self.version: str | None = version_of(known["sha256"]) if known else None
        self._output: dict | None = None
        self._error: str | None = None
        self._ready = threading.Event()
        args = (store, load, max_bytes, expected_sha256, timeout, s3_endpoint_url)
        threading.Thread(target=self._load, args=args, name="pretrained-loader", daemon=True).start()

    def _load(self, store, load, max_bytes, expected_sha256, timeout, s3_endpoint_url) -> None:
        try:
            record = fetch(self.uri, store, max_bytes, expected_sha256, timeout, s3_endpoint_url)
            output = load(store.path(record))
            if not isinstance(output, dict):
                raise PretrainedError(f"load_pretrained must return a dict, returned {type(output).__name__}")
            self.version, self._output = version_of(record["sha256"]), output
            log.info("pretrained model %s ready", self.version)
        except Exception as exc:  # reported by every later get(), and logged once here
            log.exception("MODEL_URI %s could not be loaded", shown(self.uri))
            self._error = str(exc) if isinstance(exc, PretrainedError) else f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading finished (ready or failed); for the CLI and tests."""
        return self._ready.wait(timeout)

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``failed`` (shown by ``/health``)."""
        if not self._ready.is_set():
            return "loading"
        return "ready" if self._output is not None else "failed"

    def get(self) -> tuple[str, dict]:
        if not self._ready.is_set():
            raise ModelLoading("Model is loading from MODEL_URI; retry in a few seconds")
        if self._output is None:
            raise PretrainedError(f"Pretrained model failed to load: {self._error}")
        assert self.version is not None
        return self.version, self._output


def start_loading(settings: Settings, load: Callable[[Path], dict]) -> PretrainedModel:
    """Begin fetching and loading ``MODEL_URI`` in the background with the model's ``load`` (``load_pretrained``).

    Each process holds its own copy; the fetched file is shared through MODEL_DIR (fetched once).
    """
    return PretrainedModel(settings.model_uri, PretrainedStore(settings.model_dir), load, settings.model_max_bytes,
                           settings.model_sha256, settings.model_fetch_timeout_seconds, settings.s3_endpoint_url)
