"""The backend's work, apart from HTTP: models per project, predicting, recording, training.

The server, the CLI and the tests all drive this one object.
"""

from __future__ import annotations

import fcntl
import importlib
import inspect
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .base import INITIAL_VERSION, LabelStudioMLBase
from .label_config import ConfigError, parse_label_config
from .label_studio_api import LabelStudioClient, LabelStudioError, annotations_from_tasks
from .settings import Settings
from .storage import ProjectStore, StorageError, check_writable, writing
from .training import ThreadTrainingQueue, TrainingQueue

log = logging.getLogger(__name__)


class PredictionError(RuntimeError):
    """``model.predict`` broke the contract (wrong count or shape)."""


def load_model_class(spec: str = "model") -> type[LabelStudioMLBase]:
    """Find the ``LabelStudioMLBase`` subclass in ``model.py`` (or ``module:Class``)."""
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(module_name)
    if class_name:
        return getattr(module, class_name)
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, LabelStudioMLBase)
        and obj is not LabelStudioMLBase and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise SystemExit(f"{module_name}.py must define exactly one LabelStudioMLBase subclass, found {len(found)}")
    return found[0]


@dataclass
class _Loaded:
    config: str
    stamp: int
    model: LabelStudioMLBase
    problem: str | None = None  # why this is not the current version (its file is broken)


class Backend:
    """Holds one model object per project and keeps it current."""

    def __init__(self, model_class: type[LabelStudioMLBase], settings: Settings, queue: TrainingQueue | None = None):
        check_writable(settings.model_dir)
        self.model_class = model_class
        self.settings = settings
        self.default_config = self._read_default_config(settings.label_config_path)
        self.queue = queue or ThreadTrainingQueue(self.train, settings.train_debounce_seconds)
        self._models: dict[str, _Loaded] = {}
        self._unsaved_status: dict[str, dict] = {}  # statuses a full or read-only MODEL_DIR refused
        self._lock = threading.Lock()

    @staticmethod
    def _read_default_config(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def store(self, project: str) -> ProjectStore:
        return ProjectStore(self.settings.model_dir, project, self.settings.keep_versions)

    def label_config(self, project: str, given: str | None = None) -> str:
        """The config to use: the one sent, else the project's last, else the repo's default."""
        config = given or self.store(project).label_config() or self.default_config
        if not config:
            raise ConfigError(
                "No labeling config for this project",
                "Connect the project in Label Studio (its /setup sends the config), send label_config "
                "with /predict, or create label_config.xml next to model.py.",
            )
        return config

    # --- setup and predict -------------------------------------------------
    def setup(self, project: str, config: str) -> str:
        """Check the config fits this model, remember it, return the current version."""
        self.model_class.check_config(parse_label_config(config))
        store = self.store(project)
        store.save_label_config(config)
        return self.served_version(project)

    def served_version(self, project: str) -> str:
        """The version this process serves (or would serve) for ``project``: not a broken current one."""
        loaded = self._models.get(project)
        store = self.store(project)
        if loaded is not None and loaded.stamp == store.stamp():
            return loaded.model.model_version
        return store.served_version() or INITIAL_VERSION

    def model_problem(self, project: str) -> str | None:
        """Why the model served for ``project`` is not its current version (a broken file), or None."""
        loaded = self._models.get(project)
        store = self.store(project)
        if loaded is not None and loaded.stamp == store.stamp():
            return loaded.problem
        served = store.served_version()
        return store.problem(served)

    def model(self, project: str, config: str) -> LabelStudioMLBase:
        """This process's model object for a project, rebuilt only when the config or version changed."""
        store = self.store(project)
        stamp = store.stamp()
        loaded = self._models.get(project)
        if loaded and loaded.stamp == stamp and (loaded.config is config or loaded.config == config):
            return loaded.model
        with self._lock:
            saved = store.load_model()
            version, output = saved if saved else (INITIAL_VERSION, {})
            model = self.model_class(config, project, train_output=output, model_version=version)
            problem = store.problem(saved[0] if saved else None)
            self._models[project] = _Loaded(config, stamp, model, problem)
            return model

    def predict(self, project: str, config: str, tasks: list[dict], context: dict | None = None) -> list[dict]:
        model = self.model(project, config)
        predictions = model.predict(tasks, context=context)
        if not isinstance(predictions, list) or len(predictions) != len(tasks):
            got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
            raise PredictionError(f"model.predict returned {got} predictions for {len(tasks)} tasks")
        for prediction in predictions:
            if not isinstance(prediction, dict) or not isinstance(prediction.get("result"), list):
                raise PredictionError("each prediction must be a dict with a 'result' list")
            prediction.setdefault("model_version", model.model_version)
        return predictions

    # --- training ----------------------------------------------------------
    def collect_annotations(self, project: str) -> list[dict]:
        """Annotations recorded from webhooks, plus the project's from Label Studio when configured."""
        by_id = {a["id"]: a for a in self.store(project).annotations()}
        if self.settings.label_studio_url and self.settings.label_studio_api_key and project != "default":
            client = LabelStudioClient(self.settings.label_studio_url, self.settings.label_studio_api_key)
            try:
                fetched = annotations_from_tasks(client.labeled_tasks(project))
            except LabelStudioError as exc:
                log.warning("training project %s with recorded annotations only: %s", project, exc)
                fetched = []
            for ann in fetched:
                mine = by_id.get(ann["id"])
                if mine is None or ann["updated_at"] > mine.get("updated_at", ""):
                    by_id[ann["id"]] = ann
        return list(by_id.values())

    def train(self, project: str, annotations: list[dict] | None = None) -> dict:
        """Train synchronously; on success save and make the new model current.

        A failure is recorded in the status and the previous model keeps serving.
        """
        store = self.store(project)
        try:
            with writing("the training lock"):
                store.dir.mkdir(parents=True, exist_ok=True)
                lock = open(store.dir / "train.lock", "w")  # noqa: SIM115 (closed below, after the training)
        except StorageError as exc:
            return self._failed_before_start(project, exc)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one training per project across processes
            return self._train_locked(project, store, annotations)

    def _failed_before_start(self, project: str, exc: StorageError) -> dict:
        log.error("training of project %s cannot start: %s", project, exc)
        status = {"state": "failed", "error": str(exc), "started_at": time.time(), "finished_at": time.time()}
        self._unsaved_status[project] = status
        return status

    def _save_status(self, project: str, store: ProjectStore, status: dict) -> bool:
        """Record a training status; when MODEL_DIR refuses, keep it in memory so /training still tells."""
        try:
            store.save_status(status)
        except StorageError as exc:
            log.error("project %s: %s", project, exc)
            self._unsaved_status[project] = dict(status)
            return False
        self._unsaved_status.pop(project, None)
        return True

    def _train_locked(self, project: str, store: ProjectStore, annotations: list[dict] | None) -> dict:
        started = time.time()
        status = {"state": "running", "started_at": started, "model_version": store.current_version()}
        try:
            store.save_status(status)
        except StorageError as exc:  # a full or read-only disk: no training could be saved either
            return self._failed_before_start(project, exc)
        try:
            if annotations is None:
                annotations = self.collect_annotations(project)
            usable = [a for a in annotations if a.get("result") and not a.get("was_cancelled")]
            status["annotations"] = len(usable)
            if not usable:
                status.update(state="skipped", error="no usable annotations (all empty, skipped or cancelled)")
                return status
            saved = store.load_model()
            version, output = saved if saved else (INITIAL_VERSION, {})
            model = self.model_class(self.label_config(project), project, train_output=output, model_version=version)
            result = model.fit(usable)
            if not isinstance(result, dict):
                raise TypeError(f"fit must return a dict, returned {type(result).__name__}")
            status.update(state="succeeded", model_version=store.save_model(result))
            log.info("project %s trained on %d annotations: %s", project, len(usable), status["model_version"])
        except Exception as exc:
            log.error("training of project %s failed:\n%s", project, traceback.format_exc())
            status.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            status["finished_at"] = time.time()
            self._save_status(project, store, status)
        return status

    @staticmethod
    def _training_now(store: ProjectStore) -> bool:
        """Whether some process holds the project's training lock (flock dies with its process)."""
        try:
            with open(store.dir / "train.lock", "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False  # closing the file releases the probe
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True

    def request_training(self, project: str) -> None:
        """Queue a background training; the status says "queued" until it starts."""
        store = self.store(project)
        store.save_status({"state": "queued", "requested_at": time.time()})
        self.queue.request(project)

    def status(self, project: str) -> dict:
        store = self.store(project)
        status = store.status()
        unsaved = self._unsaved_status.get(project)
        if unsaved and unsaved.get("started_at", 0) >= status.get("started_at", status.get("requested_at", 0)):
            status = dict(unsaved)  # this process's last word, which MODEL_DIR would not take
        if status.get("state") == "running" and not self._training_now(store):
            # the training.json of a process killed mid-training would say "running" forever
            status.update(state="interrupted", error="the process training this project stopped before it "
                          "finished (killed or crashed); the previous model keeps serving; train again")
        status.update(
            project=project,
            model_version=self.served_version(project),
            recorded_annotations=store.count_annotations(),
        )
        problem = self.model_problem(project)
        if problem:
            status["warning"] = problem
        return status
