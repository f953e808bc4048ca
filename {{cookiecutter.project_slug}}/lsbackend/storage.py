"""Per-project storage under MODEL_DIR: trained models, annotations, training status.

Every write is atomic (temporary file, fsync, rename), so a crash mid-save
leaves the previous file in place. A model becomes current only when the
``CURRENT`` pointer is renamed over, after the model file is on disk; all
worker processes read that pointer, so they agree on the model version.
Storage sits behind these small classes so that a shared object store can
replace the local disk without touching ``model.py``.
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
from pathlib import Path
from typing import Any

PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


TRAINED_VERSION = re.compile(r"^v(\d+)-")


class StorageError(RuntimeError):
    """MODEL_DIR cannot be used; the message names the directory and the fix."""


class UnknownVersion(LookupError):
    """A model version that is not (or no longer) kept; the message lists the kept ones."""


def version_number(version: str) -> int:
    """The training number in ``v<N>-<time>``; 0 for any other version name."""
    match = TRAINED_VERSION.match(version)
    return int(match.group(1)) if match else 0


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


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def project_key(project: object) -> str:
    """Label Studio's project id from what it sends: ``"5.1795850610"``, ``5`` or ``{"id": 5}``."""
    if isinstance(project, dict):
        project = project.get("id")
    if project is None or project == "":
        return "default"
    if isinstance(project, bool):  # str(True) would pass for an id
        raise ValueError(f"project {project!r} is not a Label Studio project id")
    key = str(project).split(".", 1)[0]
    if not PROJECT_ID.match(key):
        raise ValueError(f"project {str(project)[:40]!r} is not a Label Studio project id")
    return key


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


class ProjectStore:
    """Files of one project: ``models/``, ``CURRENT``, ``annotations/``, ``training.json``."""

    def __init__(self, root: Path, project: str, keep_versions: int = 3) -> None:
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
        """One more than the highest number ever kept, so a rollback never reuses a version name."""
        numbers = [version_number(v) for v in [*self.versions(), self.current_version() or ""]]
        return f"v{max(numbers, default=0) + 1}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"

    def _prune(self) -> None:
        """Keep the newest ``keep_versions`` trained models (a training just made the newest current)."""
        trained = [v for v in self.versions() if TRAINED_VERSION.match(v)]
        for old in trained[self.keep_versions:]:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "models" / f"{old}.pkl").unlink()

    def versions(self) -> list[str]:
        """The kept model versions, newest (highest number) first."""
        names = [p.stem for p in (self.dir / "models").glob("*.pkl") if not p.name.startswith(".")]
        return sorted(names, key=lambda v: (version_number(v), v), reverse=True)

    def use_version(self, version: str) -> None:
        """Make a kept version current again; every process picks it up through ``CURRENT``."""
        if version not in self.versions():
            kept = ", ".join(self.versions()) or "none yet"
            raise UnknownVersion(f"version {version!r} is not kept for this project (kept: {kept})")
        atomic_write(self.pointer, version.encode())

    # --- annotations ------------------------------------------------------
    def save_annotation(self, annotation: dict) -> None:
        path = self.dir / "annotations" / f"{int(annotation['id'])}.json"  # int: never a path
        atomic_write(path, json.dumps(annotation).encode())  # ASCII escapes: any str encodes

    def delete_annotation(self, annotation_id: object) -> bool:
        try:
            (self.dir / "annotations" / f"{int(annotation_id)}.json").unlink()
            return True
        except (FileNotFoundError, ValueError, TypeError, OverflowError):
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
        atomic_write(self.dir / "training.json", json.dumps(status).encode())

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "training.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "idle"}


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
