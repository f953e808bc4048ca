"""Per-project storage: trained models, annotations, label configs, training status and locks.

The rest of the runtime sees only two small interfaces: ``ModelStore`` (all
projects; ``app.open_store(settings)`` picks the implementation) and
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
import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from .errors import StorageError, StorageWriteError
from .ids import MAX_ID, PROJECT_ID, annotation_id, project_key
from .versions import UnknownVersion, VersionFallback, version_number

__all__ = [
    "MAX_ID", "PROJECT_ID", "LocalModelStore", "LocalProjectStore", "ModelStore", "ProjectStore", "StorageError",
    "StorageWriteError", "annotation_id", "atomic_write", "check_writable", "project_key",
    "UnknownVersion", "version_number", "writing",
]
log = logging.getLogger(__name__)


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn an OSError of the block into a ``StorageWriteError`` naming ``what`` was being written."""
    try:
        yield
    except OSError as exc:
        raise StorageWriteError(what, exc) from exc


def atomic_write(path: Path, data: bytes, what: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    with writing(what or path.name):
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


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


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


class LocalModelStore:
    """All projects under one directory (a local disk or a shared filesystem mount)."""

    def __init__(self, root: Path, keep_versions: int = 3) -> None:
        check_writable(Path(root))
        self.root = Path(root)
        self.keep_versions = keep_versions

    def project(self, project: str) -> LocalProjectStore:
        return LocalProjectStore(self.root, project, self.keep_versions)

    def check(self) -> None:
        """Readiness: the directory is still there and writable (a probe file is written and removed)."""
        check_writable(self.root)

    def note_setup(self, project: str) -> None:
        StoreRoot(self.root).note_setup(project)

    def last_setup(self) -> str | None:
        return StoreRoot(self.root).last_setup()


#: Model files whose checksum this process verified, as (path, size, mtime_ns, inode): see ``_may_load``.
_verified: set[tuple[str, int, int, int]] = set()


def _looks_complete(path: Path) -> bool:
    """Whether a saved pickle is there and ends with pickle's STOP opcode (a truncated one does not)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"."
    except OSError:  # missing, or empty (seeking before the start)
        return False


class StoreRoot:
    """What belongs to no single project: which project Label Studio set up last.

    Label Studio asks ``GET /versions`` without saying for which project; the
    project of its latest ``/setup`` is the best answer a shared backend has.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "last_setup"

    def note_setup(self, project: str) -> None:
        if self.last_setup() != project:  # /setup runs before every batch: write only on change
            atomic_write(self.path, project.encode())

    def last_setup(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None


class LocalProjectStore(VersionFallback):
    """Files of one project: ``models/``, ``CURRENT``, ``annotations/``, ``training.json``, ``train.lock``."""

    def __init__(self, root: Path, project: str, keep_versions: int = 3) -> None:
        if not PROJECT_ID.fullmatch(project):  # the id names a directory: never let it climb out
            raise ValueError(f"project {project[:40]!r} is not a Label Studio project id")
        self.project = project
        self.dir = Path(root) / "projects" / project
        self.keep_versions = keep_versions

    # --- models -----------------------------------------------------------
    @property
    def pointer(self) -> Path:
        return self.dir / "CURRENT"

    def stamp(self) -> tuple[int, int]:
        """Changes whenever a new model becomes current or the extra params change (two stats, no read)."""
        return _mtime(self.pointer), _mtime(self.dir / "extra_params.json")

    def current_version(self) -> str | None:
        try:
            return self.pointer.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def versions(self) -> list[str]:
        """The kept model versions, newest first by their number (never by file times, which lie
        after a clock step or a restore from backup)."""
        found = [(version_number(p.stem), p.stem) for p in (self.dir / "models").glob("v*.pkl")]
        return [name for number, name in sorted(found, reverse=True) if number is not None]

    def _verified_bytes(self, version: str) -> bytes:
        """The model file's bytes, checked against the checksum written when it was saved.

        A flipped byte inside an array still unpickles: only the checksum tells it apart.
        """
        data = (self.dir / "models" / f"{version}.pkl").read_bytes()
        try:
            expected = (self.dir / "models" / f"{version}.sha256").read_text(encoding="ascii").strip()
        except FileNotFoundError:  # saved before checksums were written
            return data
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("the file differs from what was saved (checksum mismatch)")
        return data

    def _may_load(self, version: str, kept: list[str]) -> bool:
        """Whether the version's file is there, complete and unchanged since it was saved.

        A truncated pickle lacks its last byte; a file damaged in place (same size) only fails its
        checksum. The checksum is read once per process for each state of the file (``_verified``),
        so ``/setup`` names the version ``/predict`` will serve and stays quick after the first call.
        """
        path = self.dir / "models" / f"{version}.pkl"
        if not _looks_complete(path):
            return False
        try:
            stat = path.stat()
            state = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if state not in _verified:
                self._verified_bytes(version)
                _verified.add(state)
        except (OSError, ValueError) as exc:  # gone meanwhile, or its checksum fails: note why
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self._save_broken({**self._broken(), version: self._note(version, f"{type(exc).__name__}: {why}"[:300])})
            return False
        return True

    # broken versions: {version: {"error", "size", "mtime_ns"}}; an entry counts only while the file
    # is unchanged, so a restored file is tried again
    def _read_broken(self) -> dict:
        try:
            return json.loads((self.dir / "broken.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _note(self, version: str, error: object) -> dict:
        try:
            stat = (self.dir / "models" / f"{version}.pkl").stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = None, None
        return {"error": error, "size": size, "mtime_ns": mtime}

    def _save_broken(self, broken: dict[str, dict]) -> None:
        with contextlib.suppress(OSError):  # only a note: a full disk must not stop serving
            atomic_write(self.dir / "broken.json", json.dumps(broken).encode())

    def save_model(self, train_output: dict, current: bool = True) -> str:
        """Save a trained model and make it current (unless ``current`` is False: kept, not served);
        return its new version."""
        version = self._next_version()
        data = pickle.dumps(train_output, protocol=5)
        digest = hashlib.sha256(data).hexdigest().encode()
        atomic_write(self.dir / "models" / f"{version}.sha256", digest, f"model {version}")
        atomic_write(self.dir / "models" / f"{version}.pkl", data, f"model {version}")
        if current:
            atomic_write(self.pointer, version.encode(), f"model {version}")
        self._prune(keep={version})
        return version

    def _prune(self, keep: set[str]) -> None:
        """Delete all but the newest ``keep_versions`` by number; never the current one or ``keep``."""
        protected = keep | {self.current_version()}
        for old in self.versions()[self.keep_versions :]:
            if old not in protected:
                for suffix in (".pkl", ".sha256"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.dir / "models" / f"{old}{suffix}").unlink()

    def _point_at(self, version: str) -> None:
        atomic_write(self.pointer, version.encode())

    # --- annotations ------------------------------------------------------
    def save_annotation(self, annotation: dict) -> None:
        number = annotation_id(annotation["id"])
        if number is None:
            raise ValueError(f"annotation id {annotation['id']!r:.40} is not an integer from 0 to {MAX_ID}")
        path = self.dir / "annotations" / f"{number}.json"  # an int: never a path
        atomic_write(path, json.dumps(annotation).encode(), f"annotation {number}")  # ASCII escapes: any str

    def delete_annotation(self, annotation_id_: object) -> bool:
        number = annotation_id(annotation_id_)
        if number is None:
            return False
        with writing(f"annotation {number} (deleting it)"):
            try:
                (self.dir / "annotations" / f"{number}.json").unlink()
            except FileNotFoundError:  # never recorded (or already gone): not a write failure
                return False
        return True

    def annotations(self) -> Iterator[dict]:
        folder = self.dir / "annotations"
        for name in sorted(self._annotation_files()):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                yield json.loads((folder / name).read_text(encoding="utf-8"))

    def count_annotations(self) -> int:
        return sum(1 for _ in self._annotation_files())

    def _annotation_files(self) -> Iterator[str]:
        """Names of the recorded annotations (not the ``.<name>.tmp`` files of writes under way).

        ``os.scandir`` and names, not ``Path.glob``: ``GET /training`` counts them on every call,
        and at 10,000 annotations glob's Path objects took 12 ms of the serving thread.
        """
        try:
            with os.scandir(self.dir / "annotations") as entries:
                yield from (e.name for e in entries if e.name.endswith(".json") and not e.name.startswith("."))
        except FileNotFoundError:
            return

    # --- label config and training status ---------------------------------
    def save_label_config(self, xml: str) -> None:
        path = self.dir / "label_config.xml"
        if not path.exists() or path.read_text(encoding="utf-8") != xml:
            # "replace": a lone surrogate cannot be stored as UTF-8
            atomic_write(path, xml.encode("utf-8", "replace"), "the labeling config")

    def label_config(self) -> str | None:
        try:
            return (self.dir / "label_config.xml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save_extra_params(self, params: dict) -> None:
        """Keep the Connect dialog's extra params; written only when they changed (/setup runs often)."""
        if params != self.extra_params():
            atomic_write(self.dir / "extra_params.json", json.dumps(params).encode())

    def extra_params(self) -> dict:
        try:
            found = json.loads((self.dir / "extra_params.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    def save_status(self, status: dict) -> None:
        atomic_write(self.dir / "training.json", json.dumps(status).encode(), "the training status")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "training.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "idle"}

    def save_evaluations(self, evaluations: dict[str, dict]) -> None:
        """Per version: the held-out share it was trained with and its last scores (``evaluation.py``)."""
        atomic_write(self.dir / "evaluations.json", json.dumps(evaluations).encode(), "the evaluations")

    def evaluations(self) -> dict[str, dict]:
        try:
            found = json.loads((self.dir / "evaluations.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    # --- training lock ----------------------------------------------------
    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the project's training lock (waits for another holder); the kernel drops it if we die.

        ``StorageWriteError`` when MODEL_DIR cannot take the lock file (full, read-only).
        """
        with writing("the training lock"):
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.dir / "train.lock", "w")  # noqa: SIM115 (closed below, after the training)
        with lock:
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
