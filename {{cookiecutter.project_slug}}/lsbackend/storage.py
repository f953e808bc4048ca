"""Per-project storage: trained models, annotations, label configs, training status and locks.

The rest of the runtime sees only two small interfaces: ``ModelStore`` (all
projects; ``open_store(settings)`` picks the implementation) and
``ProjectStore`` (one project). The store owns every file, pointer and lock,
so a shared object store can later replace the local disk without touching
``service.py`` or ``model.py``.

The local implementation keeps everything under ``MODEL_DIR``. Every write is
atomic (temporary file, fsync, rename), so a crash mid-save leaves the
previous file in place. A model becomes current only when the ``CURRENT``
pointer is renamed over, after the model file is on disk; all worker
processes read that pointer, so they agree on the model version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .ids import MAX_ID, PROJECT_ID, annotation_id, project_key

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "MAX_ID", "PROJECT_ID", "LocalModelStore", "LocalProjectStore", "ModelStore", "ProjectStore", "StorageError",
    "annotation_id", "atomic_write", "check_writable", "open_store", "project_key",
]


class StorageError(RuntimeError):
    """MODEL_DIR cannot be used; the message names the directory and the fix."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_writable(root: Path) -> None:
    """Fail at start-up, not at the first training, when MODEL_DIR is unusable."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"MODEL_DIR {str(root)!r} is not writable ({exc.strerror}). "
            "Set MODEL_DIR to a writable directory, or give the backend's user write access "
            "(in Docker: mount a volume there owned by the container user)."
        ) from None


class ProjectStore(Protocol):
    """What the backend may do with one project's data; every implementation keeps these promises.

    - ``save_model`` writes the whole model before ``current_version`` changes;
    - ``stamp`` is cheap (called on every /predict) and changes when the current model does;
    - ``training_lock`` is held by at most one process per project at a time and is
      released when its holder dies; ``training_running`` tells whether someone holds it.
    """

    def stamp(self) -> int: ...
    def current_version(self) -> str | None: ...
    def load_model(self) -> tuple[str, dict] | None: ...
    def save_model(self, train_output: dict) -> str: ...
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


def open_store(settings: Settings) -> ModelStore:
    """The store the settings ask for (today: the local/shared filesystem under MODEL_DIR).

    Raises ``StorageError`` naming the problem and the fix when it cannot be used.
    """
    return LocalModelStore(settings.model_dir, settings.keep_versions)


class LocalModelStore:
    """All projects under one directory (a local disk or a shared filesystem mount)."""

    def __init__(self, root: Path, keep_versions: int = 3) -> None:
        check_writable(Path(root))
        self.root = Path(root)
        self.keep_versions = keep_versions

    def project(self, project: str) -> LocalProjectStore:
        return LocalProjectStore(self.root, project, self.keep_versions)


class LocalProjectStore:
    """Files of one project: ``models/``, ``CURRENT``, ``annotations/``, ``training.json``, ``train.lock``."""

    def __init__(self, root: Path, project: str, keep_versions: int = 3) -> None:
        if not PROJECT_ID.fullmatch(project):  # the id names a directory: never let it climb out
            raise ValueError(f"project {project[:40]!r} is not a Label Studio project id")
        self.dir = Path(root) / "projects" / project
        self.keep_versions = keep_versions

    # --- models -----------------------------------------------------------
    @property
    def pointer(self) -> Path:
        return self.dir / "CURRENT"

    def stamp(self) -> int:
        """Changes whenever a new model becomes current (one stat, no read)."""
        try:
            return self.pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def current_version(self) -> str | None:
        try:
            return self.pointer.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def load_model(self) -> tuple[str, dict] | None:
        """The current (version, train_output), or None before the first training."""
        version = self.current_version()
        if version is None:
            return None
        with open(self.dir / "models" / f"{version}.pkl", "rb") as fh:
            return version, pickle.load(fh)

    def save_model(self, train_output: dict) -> str:
        """Save a trained model and make it current; return its new version."""
        version = self._next_version()
        atomic_write(self.dir / "models" / f"{version}.pkl", pickle.dumps(train_output, protocol=5))
        atomic_write(self.pointer, version.encode())
        self._prune()
        return version

    def _next_version(self) -> str:
        previous = self.current_version() or "v0"
        number = int(previous[1:].split("-", 1)[0]) + 1 if re.match(r"^v\d+", previous) else 1
        return f"v{number}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"

    def _prune(self) -> None:
        models = sorted((self.dir / "models").glob("v*.pkl"), key=lambda p: p.stat().st_mtime_ns)
        for old in models[: -self.keep_versions]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    # --- annotations ------------------------------------------------------
    def save_annotation(self, annotation: dict) -> None:
        number = annotation_id(annotation["id"])
        if number is None:
            raise ValueError(f"annotation id {annotation['id']!r:.40} is not an integer from 0 to {MAX_ID}")
        path = self.dir / "annotations" / f"{number}.json"  # an int: never a path
        atomic_write(path, json.dumps(annotation).encode())  # ASCII escapes: any str encodes

    def delete_annotation(self, annotation_id_: object) -> bool:
        number = annotation_id(annotation_id_)
        if number is None:
            return False
        try:
            (self.dir / "annotations" / f"{number}.json").unlink()
            return True
        except FileNotFoundError:
            return False

    def annotations(self) -> Iterator[dict]:
        for path in sorted((self.dir / "annotations").glob("*.json")):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                yield json.loads(path.read_text(encoding="utf-8"))

    def count_annotations(self) -> int:
        return sum(1 for _ in (self.dir / "annotations").glob("*.json"))

    # --- label config and training status ---------------------------------
    def save_label_config(self, xml: str) -> None:
        path = self.dir / "label_config.xml"
        if not path.exists() or path.read_text(encoding="utf-8") != xml:
            atomic_write(path, xml.encode("utf-8", "replace"))  # a lone surrogate cannot be stored as UTF-8

    def label_config(self) -> str | None:
        try:
            return (self.dir / "label_config.xml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save_status(self, status: dict) -> None:
        atomic_write(self.dir / "training.json", json.dumps(status).encode())

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "training.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "idle"}

    # --- training lock ----------------------------------------------------
    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the project's training lock (waits for another holder); the kernel drops it if we die."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "train.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def training_running(self) -> bool:
        """Whether some process holds the project's training lock right now."""
        try:
            with open(self.dir / "train.lock", "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False  # closing the file releases the probe
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
