"""Per-project storage: trained models, annotations, label configs, training status and locks.

The rest of the runtime sees only two small interfaces: ``ModelStore`` (all
projects; ``app.open_store(settings)`` picks the implementation) and
``ProjectStore`` (one project). The store owns every file, pointer and lock.
Both implementations are ``blob_store.BlobModelStore``, written once over a
small blob interface (``blobs.py``): ``LocalModelStore`` over the local disk
(``MODEL_DIR``) here, ``storage_s3.S3ModelStore`` over S3.

Every local write is atomic (temporary file, fsync, rename), so a crash
mid-save leaves the previous file in place. A model becomes current only when
the ``CURRENT`` pointer is renamed over, after the model file is on disk; all
worker processes read that pointer, so they agree on the model version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from .blob_store import BlobModelStore, BlobProjectStore
from .blobs import LocalBlobs, atomic_write, check_writable, writing
from .errors import StorageError, StorageWriteError
from .ids import MAX_ID, PROJECT_ID, annotation_id, project_key
from .versions import UnknownVersion, version_number

__all__ = [
    "MAX_ID", "PROJECT_ID", "LocalModelStore", "LocalProjectStore", "ModelStore", "ProjectStore", "StorageError",
    "StorageWriteError", "annotation_id", "atomic_write", "check_writable", "project_key",
    "UnknownVersion", "version_number", "writing",
]


class ProjectStore(Protocol):
    """What the backend may do with one project's data; every implementation keeps these promises.

    - ``save_model`` writes the whole model before ``current_version`` changes;
    - ``stamp`` is cheap (called on every /predict) and changes when the current model does;
    - ``load_model`` falls back to the newest kept version that loads, and ``problem`` says why;
    - writes that fail raise ``StorageWriteError`` (full, read-only) naming what was being written;
    - ``training_lock`` is held by at most one process per project at a time and is
      released when its holder dies; ``training_running`` tells whether someone holds it.
    """

    def stamp(self) -> tuple[int, int]: ...
    def versions(self) -> list[str]: ...
    def use_version(self, version: str) -> None: ...
    def save_extra_params(self, params: dict) -> None: ...
    def extra_params(self) -> dict: ...
    def current_version(self) -> str | None: ...
    def load_model(self) -> tuple[str, dict] | None: ...
    def served_version(self) -> str | None: ...
    def problem(self, served: str | None) -> str | None: ...
    def save_model(self, train_output: dict, current: bool = True) -> str: ...
    def load_version(self, version: str) -> dict: ...
    def evaluations(self) -> dict[str, dict]: ...
    def save_evaluations(self, evaluations: dict[str, dict]) -> None: ...
    def save_annotation(self, annotation: dict) -> None: ...
    def delete_annotation(self, annotation_id: object) -> bool: ...
    def annotations(self) -> Iterator[dict]: ...
    def count_annotations(self) -> int: ...
    def save_label_config(self, xml: str) -> None: ...
    def label_config(self) -> str | None: ...
    def save_status(self, status: dict) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def training_lock(self) -> AbstractContextManager[None]: ...
    def training_running(self) -> bool: ...


class ModelStore(Protocol):
    """Where every project's data lives; ``project`` hands out one project's view."""

    def project(self, project: str) -> ProjectStore: ...
    def check(self) -> None: ...  # raises StorageError when the store cannot serve now (readiness)
    def note_setup(self, project: str) -> None: ...  # the project Label Studio set up last (GET /versions)
    def last_setup(self) -> str | None: ...


class LocalModelStore(BlobModelStore):
    """All projects under one directory (a local disk or a shared filesystem mount)."""

    def __init__(self, root: Path, keep_versions: int = 3) -> None:
        super().__init__(LocalBlobs(Path(root)), keep_versions)
        self.root = Path(root)

    def project(self, project: str) -> LocalProjectStore:
        return LocalProjectStore(self, project)


class LocalProjectStore(BlobProjectStore):
    """Files of one project under ``MODEL_DIR/projects/<id>/``."""

    blobs: LocalBlobs

    @property
    def dir(self) -> Path:
        """The project's folder (tests and operators look at its files)."""
        return self.blobs.root / "projects" / self.project


class PretrainedStore:
    """The artifact ``MODEL_URI`` names, cached once under ``MODEL_DIR/pretrained/`` for every process.

    Files are named by their SHA-256, so a cached file is never half-written or stale: ``record``
    says which URI it came from, and a different URI is fetched anew. ``lock`` serialises the
    fetch across worker processes (the first downloads, the others find it cached).
    """

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "pretrained"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".fetch.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def temporary(self) -> Path:
        """A fresh file in the cache's folder, to download into (renamed by ``keep``)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.dir, prefix=".download.", suffix=".tmp")
        os.close(fd)
        return Path(name)

    def keep(self, download: Path, uri: str, sha256: str, size: int, suffix: str) -> dict:
        """Move a verified download into place and record where it came from."""
        path = self.dir / f"{sha256}{suffix}"
        os.replace(download, path)
        record = {"uri": uri, "sha256": sha256, "size": size, "file": path.name, "fetched_at": time.time()}
        atomic_write(self.dir / "source.json", json.dumps(record).encode())
        return record

    def record(self, uri: str) -> dict | None:
        """The cached artifact fetched from ``uri``, if its file is still there."""
        try:
            record = json.loads((self.dir / "source.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if record.get("uri") != uri or not (self.dir / str(record.get("file"))).is_file():
            return None
        return record

    def path(self, record: dict) -> Path:
        return self.dir / record["file"]
