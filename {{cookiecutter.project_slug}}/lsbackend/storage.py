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
import json
import math
import os
import pickle
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Label Studio's ids are database integers (PostgreSQL bigint at most): anything outside is not an id.
MAX_ID = 2**63 - 1


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


def project_key(project: object) -> str:
    """Label Studio's project id from what it sends: ``"5.1795850610"``, ``5`` or ``{"id": 5}``."""
    if isinstance(project, dict):
        project = project.get("id")
    if project is None or project == "":
        return "default"
    if isinstance(project, bool) or (isinstance(project, float) and not math.isfinite(project)):
        # str(True) and str(float("inf")) would pass for an id
        raise ValueError(f"project {project!r} is not a Label Studio project id")
    key = str(project).split(".", 1)[0]
    if not PROJECT_ID.fullmatch(key):  # fullmatch: "5\n" is not project 5
        raise ValueError(f"project {str(project)[:40]!r} is not a Label Studio project id")
    return key


def annotation_id(value: object) -> int | None:
    """``value`` as an annotation id, or None: only a plain integer in Label Studio's id range counts.

    The id names the annotation's file, so create and delete must agree on it:
    ``true`` or ``4300.9`` are not ids (they used to delete annotations 1 and 4300).
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
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
