"""The model store, written once over ``blobs.Blobs``: local disk and S3 keep the same promises the same way.

A project's keys, alike on disk and in a bucket (``projects/<id>/...``):
``models/<version>.pkl`` and its ``.sha256``, ``CURRENT`` (the pointer),
``broken.json``, ``annotations/`` (the log, ``annotations.py``),
``label_config.xml``, ``extra_params.json``, ``training.json``,
``evaluations.json`` and ``train.lock``.

- a model is written whole (checksum first, then the model), and ``CURRENT``
  only after it, so a crash mid-save never points at a partial model and a
  failed training leaves the last good one current;
- which kept version serves (the current one, else the newest that loads) is
  ``versions.VersionFallback``; this module supplies its bytes and notes;
- recorded annotations are an operation log compacted in the background
  every ``PENDING_BEFORE_COMPACT`` records per process, so training reads a
  few segments instead of one object per annotation;
- the training lock is the blobs' ``lock``: a ``flock`` on disk, a lease on S3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pickle
import threading
from collections.abc import Iterator
from typing import Any

from .annotations import AnnotationLog, Summaries
from .blobs import Blobs, Held
from .errors import StorageError
from .ids import MAX_ID, PROJECT_ID, annotation_id
from .versions import VersionFallback, version_number

log = logging.getLogger(__name__)

PENDING_BEFORE_COMPACT = 100  # annotations a process records before it compacts the pending objects

#: Model objects whose checksum this process verified, as (store, key, tag): see ``_may_load``.
_verified: set[tuple[str, str, str]] = set()


class BlobModelStore:
    """Every project's data in one ``Blobs``; ``project`` hands out one project's view."""

    def __init__(self, blobs: Blobs, keep_versions: int = 3) -> None:
        self.blobs = blobs
        self.keep_versions = keep_versions
        self.summaries = Summaries()  # what counting read, shared by this process's project views
        self._saved_since_compact: dict[str, int] = {}
        self._compacting: set[str] = set()
        self._lock = threading.Lock()

    def project(self, project: str) -> BlobProjectStore:
        return BlobProjectStore(self, project)

    def check(self) -> None:
        """Readiness: raises ``StorageError`` naming the fix when the store cannot serve now."""
        self.blobs.check()

    def note_setup(self, project: str) -> None:
        """Remember the project of the latest /setup (Label Studio's ``GET /versions`` names none).

        /setup runs before every batch: written only on change."""
        if self.last_setup() != project:
            self.blobs.put("last_setup", project.encode(), "the project set up last")

    def last_setup(self) -> str | None:
        data = self.blobs.get("last_setup", "the project set up last")
        return data.decode("utf-8").strip() or None if data else None

    # --- background compaction ---------------------------------------------------
    def saved_annotation(self, store: BlobProjectStore) -> None:
        """Count this process's pending writes; every ``PENDING_BEFORE_COMPACT``, compact in the background."""
        with self._lock:
            count = self._saved_since_compact.get(store.project, 0) + 1
            self._saved_since_compact[store.project] = count
            if count < PENDING_BEFORE_COMPACT or store.project in self._compacting:
                return
            self._saved_since_compact[store.project] = 0
            self._compacting.add(store.project)
        threading.Thread(target=self._compact, args=(store,), name=f"compact-{store.project}", daemon=True).start()

    def _compact(self, store: BlobProjectStore) -> None:
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


class BlobProjectStore(VersionFallback):
    """One project's data under ``projects/<id>/``; keeps every promise of ``storage.ProjectStore``."""

    def __init__(self, store: BlobModelStore, project: str) -> None:
        if not PROJECT_ID.fullmatch(project):  # the id names a folder or key prefix: never let it climb out
            raise ValueError(f"project {project[:40]!r} is not a Label Studio project id")
        self.s, self.blobs, self.project = store, store.blobs, project
        self.base = f"projects/{project}/"
        self.MEDIUM, self.UNREACHABLE = store.blobs.medium, store.blobs.unreachable
        self._held: Held | None = None

    def key(self, name: str) -> str:
        return self.base + name

    # --- models -----------------------------------------------------------
    def stamp(self) -> tuple[int, int]:
        """Changes whenever a new model becomes current or the extra params change (cheap: every /predict)."""
        pointer, params = self.blobs.stamp((self.key("CURRENT"), self.key("extra_params.json")))
        return pointer, params

    def current_version(self) -> str | None:
        data = self.blobs.get(self.key("CURRENT"), "the current-version pointer")
        return data.decode("utf-8").strip() or None if data else None

    def versions(self) -> list[str]:
        """The kept model versions, newest first by their number (never by file times, which lie
        after a clock step or a restore from backup)."""
        names = [k.rsplit("/", 1)[1][:-4] for k in self.blobs.list(self.key("models/"), "the model versions")
                 if k.endswith(".pkl")]
        found = [(version_number(n), n) for n in names]
        return [name for number, name in sorted(found, reverse=True) if number is not None]

    def _verified_bytes(self, version: str) -> bytes:
        """The model's bytes, checked against the checksum written before it.

        A flipped byte inside an array still unpickles: only the checksum tells it apart.
        """
        data = self.blobs.get(self.key(f"models/{version}.pkl"), f"model {version}")
        if data is None:
            raise FileNotFoundError(f"model {version} is not in the store")
        expected = self.blobs.get(self.key(f"models/{version}.sha256"), f"model {version}")
        if expected is None:  # saved before checksums were written: at least it must end like a pickle
            if not data.endswith(b"."):
                raise ValueError(f"the {self.MEDIUM} is incomplete (cut short)")
        elif hashlib.sha256(data).hexdigest() != expected.decode("ascii", "replace").strip():
            raise ValueError(f"the {self.MEDIUM} differs from what was saved (checksum mismatch)")
        return data

    def _may_load(self, version: str, kept: list[str]) -> bool:
        """Whether the version is there, complete and unchanged since it was saved.

        The checksum is checked once per process for each state of the object (``_verified``), so
        ``/setup`` names the version ``/predict`` will serve and stays quick after the first call.
        """
        key = self.key(f"models/{version}.pkl")
        tag = self.blobs.tag(key)
        if tag is None:
            return False
        if (self.blobs.name, key, tag) in _verified:
            return True
        try:
            self._verified_bytes(version)
        except self.UNREACHABLE:
            raise
        except (OSError, ValueError) as exc:  # gone meanwhile, or its checksum fails: note why
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self._save_broken({**self._broken(), version: self._note(version, f"{type(exc).__name__}: {why}"[:300])})
            return False
        _verified.add((self.blobs.name, key, tag))
        return True

    # broken versions: {version: {"error", "tag"}}; an entry counts only while the object is unchanged,
    # so a restored file is tried again
    def _read_broken(self) -> dict:
        return self._json("broken.json", "the notes on broken models", {})

    def _note(self, version: str, error: object) -> dict:
        return {"error": error, "tag": self.blobs.tag(self.key(f"models/{version}.pkl"))}

    def _save_broken(self, broken: dict[str, dict]) -> None:
        with contextlib.suppress(StorageError):  # only a note: a full disk or an outage must not stop serving
            self.blobs.put(self.key("broken.json"), json.dumps(broken).encode(), "the notes on broken models")

    def save_model(self, train_output: dict, current: bool = True) -> str:
        """Save a trained model, then (only then) make it current unless ``current`` is False; return its version.

        A store unreachable for a while (S3: up to ``SAVE_RETRY_SECONDS``) delays the save instead of
        losing a training that may have taken hours.
        """
        data = pickle.dumps(train_output, protocol=5)
        digest = hashlib.sha256(data).hexdigest().encode()
        version = self.blobs.patiently(self._next_version)
        what = f"model {version}"
        self.blobs.patiently(lambda: self.blobs.put(self.key(f"models/{version}.sha256"), digest, what))
        self.blobs.patiently(lambda: self.blobs.put(self.key(f"models/{version}.pkl"), data, what))
        if current:
            self.blobs.patiently(lambda: self._move_pointer(version, what))
        with contextlib.suppress(StorageError):  # old versions go at the next save
            self._prune(keep={version})
        return version

    def _move_pointer(self, version: str, what: str) -> None:
        if self._held is not None and self._held.lost:
            raise StorageError(f"{self.blobs.name}: the training lock of project {self.project} expired "
                               f"while {what} was being saved (another process may train now); not made current")
        self.blobs.put(self.key("CURRENT"), version.encode(), what)

    def _prune(self, keep: set[str]) -> None:
        """Delete all but the newest ``keep_versions`` by number; never the current one or ``keep``."""
        protected = keep | {self.current_version()}
        old = [v for v in self.versions()[self.s.keep_versions:] if v not in protected]
        if old:
            keys = [self.key(f"models/{v}{suffix}") for v in old for suffix in (".pkl", ".sha256")]
            self.blobs.delete(keys, "old model versions")

    def _point_at(self, version: str) -> None:
        self._move_pointer(version, f"the pointer to {version}")

    # --- annotations ------------------------------------------------------
    def annotation_log(self) -> AnnotationLog:
        return AnnotationLog(self.blobs, self.key("annotations/"), self.s.summaries)

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

    # --- label config, extra params, training status, evaluations -----------
    def _json(self, name: str, what: str, default: Any) -> Any:
        data = self.blobs.get(self.key(name), what)
        try:
            found = json.loads(data) if data else default
        except json.JSONDecodeError:
            return default
        return found if isinstance(found, type(default)) else default

    def save_label_config(self, xml: str) -> None:
        if self.label_config() != xml:  # /setup runs before every batch: write only on change
            # "replace": a lone surrogate cannot be stored as UTF-8
            self.blobs.put(self.key("label_config.xml"), xml.encode("utf-8", "replace"), "the labeling config")

    def label_config(self) -> str | None:
        data = self.blobs.get(self.key("label_config.xml"), "the labeling config")
        return None if data is None else data.decode("utf-8", "replace")

    def save_extra_params(self, params: dict) -> None:
        """Keep the Connect dialog's extra params; written only when they changed (/setup runs often)."""
        if params != self.extra_params():
            self.blobs.put(self.key("extra_params.json"), json.dumps(params).encode(), "the extra params")

    def extra_params(self) -> dict:
        return self._json("extra_params.json", "the extra params", {})

    def save_status(self, status: dict) -> None:
        self.blobs.put(self.key("training.json"), json.dumps(status).encode(), "the training status")

    def status(self) -> dict[str, Any]:
        return self._json("training.json", "the training status", {"state": "idle"})

    def save_evaluations(self, evaluations: dict[str, dict]) -> None:
        """Per version: the held-out share it was trained with and its last scores (``evaluation.py``)."""
        self.blobs.put(self.key("evaluations.json"), json.dumps(evaluations).encode(), "the evaluations")

    def evaluations(self) -> dict[str, dict]:
        return self._json("evaluations.json", "the evaluations", {})

    # --- training lock ----------------------------------------------------
    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the project's training lock (waits for another holder); freed when its holder dies.

        ``StorageWriteError`` when the store cannot take the lock (a full or read-only MODEL_DIR).
        """
        with self.blobs.lock(self.key("train.lock"), "the training lock") as held:
            self._held = held
            try:
                yield
            finally:
                self._held = None

    def training_running(self) -> bool:
        """Whether some process holds the project's training lock right now."""
        return self.blobs.locked(self.key("train.lock"))
