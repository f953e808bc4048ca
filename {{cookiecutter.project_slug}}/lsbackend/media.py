"""Turn the media reference in a task (an image URL, path or data URI) into bytes.

Label Studio hands tasks over with their media exactly as imported, so one
resolver has to understand every kind:

- ``http(s)://...``: downloaded; Label Studio's API key is sent only when the
  URL is on ``LABEL_STUDIO_URL`` itself;
- ``/data/upload/...``, ``/data/local-files/?d=...``, ``/tasks/<id>/resolve/...``:
  paths on Label Studio, downloaded from ``LABEL_STUDIO_URL`` with the API key;
- ``s3://``, ``gs://``, ``azure-blob://``: asked of Label Studio's resolve endpoint
  for the task, which redirects to a presigned URL (the key is not forwarded there);
- ``data:``: decoded in place;
- ``file://`` URLs, and paths under ``LOCAL_FILES_ROOT``: read from disk, never
  outside that folder.

Every failure is a ``MediaError`` whose message names the task's reference and
the setting to fix, so a model can report it per task and go on with the others.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .label_studio_api import LabelStudioClient, LabelStudioError
from .settings import Settings

log = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
WEB_SCHEMES = ("http", "https")
CHUNK_BYTES = 64 * 1024
FETCH_THREADS = 4
DOCKER_HINT = "inside Docker, localhost is the container itself: use an address the container can reach"
KEY_HINT = "check LABEL_STUDIO_API_KEY: legacy token or personal access token?"


class MediaError(RuntimeError):
    """A task's media could not be loaded; the message says which and what to change."""


def _short(uri: str, limit: int = 80) -> str:
    """The reference as shown in messages and logs: shortened, and without its query string,
    where presigned URLs carry their credentials."""
    if "?" in uri and not uri.startswith("data:"):
        uri = uri.split("?", 1)[0] + "?..."
    return uri if len(uri) <= limit else uri[: limit - 3] + "..."


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, and never carry the API key to another host.

    The resolve endpoint redirects to a presigned cloud URL: sending Label
    Studio's token there would leak it (and S3 refuses two kinds of auth).
    """

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 (urllib's signature)
        location = headers.get("location") or headers.get("uri") or ""
        target = urllib.parse.urljoin(req.full_url, location)
        scheme = urllib.parse.urlsplit(target).scheme.lower()
        if scheme not in WEB_SCHEMES:
            raise MediaError(
                f"{_short(req.full_url)} redirects to a {scheme or 'schemeless'} URL ({_short(target)}); "
                "only http and https are followed"
            )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's signature)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _ByteCache:
    """A small thread-safe LRU of downloaded bytes, bounded by total size."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size -= len(old) if old is not None else 0
            self._items[key] = value
            self._size += len(value)
            while self._size > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)


class MediaResolver:
    """Loads task media as bytes, with limits, a bounded cache and clear errors."""

    def __init__(self, settings: Settings) -> None:
        self.label_studio_url = settings.label_studio_url.rstrip("/")
        self.api_key = settings.label_studio_api_key
        self.timeout = settings.media_timeout_seconds
        self.max_bytes = settings.media_max_bytes
        self.root = Path(settings.local_files_root).resolve() if settings.local_files_root else None
        self.cache = _ByteCache(settings.media_cache_bytes)
        self._client = LabelStudioClient(self.label_studio_url, self.api_key) if self.label_studio_url else None
        self._opener = urllib.request.build_opener(_SafeRedirects)

    # --- public ------------------------------------------------------------
    def fetch(self, uri: object, task_id: object = None) -> bytes:
        """The bytes ``uri`` refers to, or ``MediaError`` saying why not and what to set."""
        if not isinstance(uri, str) or not uri.strip():
            raise MediaError(f"task {task_id} has no media reference, got {type(uri).__name__} {uri!r:.40}")
        uri = uri.strip()
        if uri[:5].lower() == "data:":
            return self._data_uri(uri)
        return self._fetch_reference(uri, task_id)

    def fetch_many(self, items: Iterable[tuple[object, object]]) -> list[bytes | MediaError]:
        """Fetch ``(uri, task_id)`` pairs in a few threads; each entry is bytes or its ``MediaError``."""

        def one(item: tuple[object, object]) -> bytes | MediaError:
            try:
                return self.fetch(*item)
            except MediaError as exc:
                return exc

        items = list(items)
        if len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(items))) as pool:
            return list(pool.map(one, items))

    # --- kinds -------------------------------------------------------------
    def _fetch_reference(self, uri: str, task_id: object) -> bytes:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        local = self._local_path(uri, scheme)
        if local is not None:
            return self._read_file(local, uri)
        if scheme in WEB_SCHEMES:
            same_origin = bool(self.label_studio_url) and _origin(uri) == _origin(self.label_studio_url)
            return self._download(uri, uri, from_label_studio=same_origin)
        if scheme in CLOUD_SCHEMES:
            return self._cloud(uri, task_id)
        if uri.startswith("/"):
            return self._download(self._label_studio_url_for(uri), uri, from_label_studio=True)
        raise MediaError(
            f"cannot load a reference of this kind ({len(uri)} characters, not shown): "
            "use an http(s) URL, a Label Studio path (/data/...), "
            f"a cloud URI ({', '.join(s + '://' for s in CLOUD_SCHEMES)}), a data: URI, "
            "or a file under LOCAL_FILES_ROOT"
        )

    def _data_uri(self, uri: str) -> bytes:
        header, comma, payload = uri[5:].partition(",")
        if not comma:
            raise MediaError(f"data URI {_short(uri, 40)!r} has no ',' before its data")
        if len(payload) * 3 // 4 > self.max_bytes:
            raise MediaError(f"data URI is larger than {self._limit_text()}; raise MEDIA_MAX_MB or send a URL")
        if header.lower().endswith(";base64"):
            try:
                return base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                raise MediaError(f"data URI {_short(uri, 40)!r} is not valid base64") from None
        return urllib.parse.unquote_to_bytes(payload)

    def _cloud(self, uri: str, task_id: object) -> bytes:
        if task_id is None:
            raise MediaError(f"{_short(uri)!r} can only be resolved by Label Studio for a task; the task has no id")
        fileuri = base64.urlsafe_b64encode(uri.encode()).decode()
        path = f"/tasks/{task_id}/resolve/?fileuri={fileuri}"
        return self._download(self._label_studio_url_for(uri, path), uri, from_label_studio=True)

    def _label_studio_url_for(self, uri: str, path: str | None = None) -> str:
        if not self.label_studio_url:
            raise MediaError(
                f"{_short(uri)!r} is served by Label Studio: set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY) "
                f"so the backend can download it; {DOCKER_HINT}"
            )
        if not self.api_key:
            raise MediaError(f"{_short(uri)!r} is served by Label Studio, which needs a key: set LABEL_STUDIO_API_KEY")
        return self.label_studio_url + (path or uri)

    # --- local files -------------------------------------------------------
    def _local_path(self, uri: str, scheme: str) -> Path | None:
        """The disk path ``uri`` names, or None when it is not a local reference."""
        if scheme == "file":
            path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
        elif self.root is not None and not scheme and not uri.startswith("/"):
            path = uri  # relative to LOCAL_FILES_ROOT
        elif self.root is not None and uri.startswith("/") and Path(uri).is_relative_to(self.root):
            path = uri
        else:
            return None
        if self.root is None:
            raise MediaError(f"{_short(uri)!r} is a local file: set LOCAL_FILES_ROOT to the folder that holds it")
        return self._confined(path, uri)

    def _confined(self, path: str, uri: str) -> Path:
        """``path`` inside LOCAL_FILES_ROOT after resolving ``..`` and symlinks, or ``MediaError``."""
        assert self.root is not None
        try:
            target = (self.root / path).resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise MediaError(f"{_short(uri)!r}: no such file under LOCAL_FILES_ROOT={self.root}") from None
        except (OSError, RuntimeError) as exc:
            raise MediaError(f"{_short(uri)!r}: cannot resolve the path ({exc})") from None
        if not target.is_relative_to(self.root):
            raise MediaError(f"{_short(uri)!r} is outside LOCAL_FILES_ROOT={self.root}; only files inside it are read")
        return target

    def _read_file(self, path: Path, uri: str) -> bytes:
        try:
            if not path.is_file():
                raise MediaError(f"{_short(uri)!r} is not a regular file")
            if path.stat().st_size > self.max_bytes:
                raise MediaError(f"{_short(uri)!r} is larger than {self._limit_text()}; raise MEDIA_MAX_MB")
            return path.read_bytes()
        except OSError as exc:
            raise MediaError(f"cannot read {_short(uri)!r}: {exc.strerror or exc}") from None

    # --- HTTP --------------------------------------------------------------
    def _download(self, url: str, uri: str, from_label_studio: bool) -> bytes:
        """GET ``url`` (``uri`` is what the task said, for messages); cached, as predict and train repeat it."""
        cached = self.cache.get(url)
        if cached is not None:
            return cached
        data = self._download_uncached(url, uri, from_label_studio)
        self.cache.put(url, data)
        return data

    def _download_uncached(self, url: str, uri: str, from_label_studio: bool) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "lsbackend-media"})
        if from_label_studio:
            request.add_header("Authorization", self._auth_header())
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return self._read_limited(response, uri)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc.code, uri, from_label_studio) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise self._connection_error(exc, uri, from_label_studio) from None

    def _auth_header(self) -> str:
        assert self._client is not None
        try:
            return self._client.auth_header()
        except LabelStudioError as exc:
            raise MediaError(str(exc)) from None
        except (KeyError, TypeError, ValueError):
            raise MediaError(f"Label Studio's token refresh gave no access token; {KEY_HINT}") from None

    def _read_limited(self, response, uri: str) -> bytes:  # noqa: ANN001 (an http.client response)
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise MediaError(f"{_short(uri)!r} is {int(length)} bytes, over {self._limit_text()}; raise MEDIA_MAX_MB")
        deadline = time.monotonic() + self.timeout
        chunks, size = [], 0
        while chunk := response.read(CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaError(f"{_short(uri)!r} is over {self._limit_text()}; raise MEDIA_MAX_MB")
            if time.monotonic() > deadline:
                raise TimeoutError("download took too long")
            chunks.append(chunk)
        return b"".join(chunks)

    def _http_error(self, code: int, uri: str, from_label_studio: bool) -> MediaError:
        where = "Label Studio" if from_label_studio else "the server"
        if code in (401, 403) and from_label_studio:
            return MediaError(f"Label Studio answered {code} for {_short(uri)!r}: {KEY_HINT}")
        if code == 404:
            return MediaError(f"{where} answered 404 for {_short(uri)!r}: the file does not exist there")
        return MediaError(f"{where} answered {code} for {_short(uri)!r}")

    def _connection_error(self, exc: BaseException, uri: str, from_label_studio: bool) -> MediaError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            return MediaError(f"{_short(uri)!r} timed out after {self.timeout:g}s; raise MEDIA_TIMEOUT_SECONDS")
        if from_label_studio:
            return MediaError(
                f"cannot reach Label Studio at {self.label_studio_url} for {_short(uri)!r} ({reason}): "
                f"check LABEL_STUDIO_URL; {DOCKER_HINT}"
            )
        return MediaError(f"cannot download {_short(uri)!r} ({reason})")

    def _limit_text(self) -> str:
        return f"the {self.max_bytes / (1024 * 1024):g} MB limit"


_resolvers: dict[int, tuple[Settings, MediaResolver]] = {}
_resolvers_lock = threading.Lock()
_RESOLVERS_KEPT = 8


def resolver_for(settings: Settings) -> MediaResolver:
    """The resolver for these settings, shared by every model object built with them.

    Sharing keeps one download cache per backend instead of one per project and
    model version; the settings come from whoever built the model, never from
    the environment.
    """
    with _resolvers_lock:
        kept = _resolvers.get(id(settings))
        if kept is not None and kept[0] is settings:
            return kept[1]
        if len(_resolvers) >= _RESOLVERS_KEPT:  # tests build many settings; a server builds one
            _resolvers.pop(next(iter(_resolvers)))
        resolver = MediaResolver(settings)
        _resolvers[id(settings)] = (settings, resolver)
        return resolver


def failed_prediction(task: dict, error: MediaError, model_version: str) -> dict:
    """The prediction for a task whose media failed: empty, with the reason, logged.

    The version gets a ``+media-error`` suffix: Label Studio re-predicts a task
    only when it has no prediction with the current version, so this keeps the
    task in line for the next "Retrieve predictions" once the cause is fixed.
    """
    task_id = task.get("id") if isinstance(task, dict) else None
    log.warning("task %s: no prediction: %s", task_id, error)
    return {"result": [], "score": 0.0, "model_version": f"{model_version}+media-error", "error": str(error)}
