"""The backend's work, apart from HTTP: models per project, predicting, recording, training.

``Backend`` is the only door to a project's data: the server, the CLI and the
tests all drive this one object, and it reaches the data only through the
store (``storage.open_store``), never by opening files itself.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .base import INITIAL_VERSION, LabelStudioMLBase
from .interaction import interactive_kind, parse_interaction
from .label_config import ConfigError, parse_label_config, read_config_file
from .label_studio_api import LabelStudioClient, LabelStudioError, annotations_from_tasks, normalize_annotation
from .metrics import Metrics
from .pretrained import ModelLoading, PretrainedError, PretrainedModel
from .settings import Settings
from .storage import ModelStore, PretrainedStore, ProjectStore, StorageError, StorageWriteError, open_store
from .training import QueueUnavailable, TrainingQueue, describe_exit, open_queue, run_in_child
from .webhook_auth import WebhookAuthorizer

__all__ = ["Backend", "ModelClassError", "PredictionError", "QueueUnavailable", "StorageError", "StorageWriteError",
           "load_model_class"]

log = logging.getLogger(__name__)


class PredictionError(RuntimeError):
    """``model.predict`` broke the contract (wrong count or shape)."""


class ModelClassError(RuntimeError):
    """``MODEL_CLASS`` does not name one usable ``LabelStudioMLBase`` subclass; the message says how to fix it."""


def load_model_class(spec: str = "model") -> type[LabelStudioMLBase]:
    """Find the ``LabelStudioMLBase`` subclass in ``model.py`` (or ``module:Class``)."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # model.py itself imports something missing: show the real traceback
        raise ModelClassError(f"MODEL_CLASS={spec!r}: no module {module_name!r} on the path; "
                              "run from the repo folder (next to model.py) or fix MODEL_CLASS") from None
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, LabelStudioMLBase)):
            raise ModelClassError(f"MODEL_CLASS={spec!r}: {module_name} has no LabelStudioMLBase subclass "
                                  f"named {class_name!r}")
        return found
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, LabelStudioMLBase)
        and obj is not LabelStudioMLBase and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ModelClassError(f"{module_name}.py must define exactly one LabelStudioMLBase subclass, found "
                              f"{len(found)}; or set MODEL_CLASS=module:Class")
    return found[0]


@dataclass
class _Loaded:
    config: str
    stamp: tuple[int, int]
    model: LabelStudioMLBase
    problem: str | None = None  # why this is not the current version (its file is broken)


class Backend:
    """Holds one model object per project and keeps it current."""

    def __init__(
        self,
        model_class: type[LabelStudioMLBase],
        settings: Settings,
        queue: TrainingQueue | None = None,
        store: ModelStore | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.model_class = model_class
        self.settings = settings
        self.stores = store or open_store(settings)  # raises StorageError at start-up, not at the first training
        self.metrics = metrics or Metrics(settings.metrics_dir)
        #: What /ready checks: name -> a callable that raises when that part cannot serve. Add your own
        #: (a queue, Redis) with ``backend.readiness_checks["name"] = check``.
        self.readiness_checks: dict[str, Callable[[], object]] = {"model_store": self.stores.check}
        self.default_config = read_config_file(settings.label_config_path)
        self.queue = queue or open_queue(settings, self.train_in_child)
        if settings.redis_url and hasattr(self.queue, "check"):
            self.readiness_checks["redis"] = self.queue.check  # can trainings be queued?
        self._models: dict[str, _Loaded] = {}
        self.webhook_auth = WebhookAuthorizer(settings)
        self._unsaved_status: dict[str, dict] = {}  # statuses a full or read-only MODEL_DIR refused
        self._lock = threading.Lock()
        self.pretrained = self._start_pretrained()

    def _start_pretrained(self) -> PretrainedModel | None:
        """Begin fetching and loading MODEL_URI in the background (each process holds its own copy)."""
        settings = self.settings
        if not settings.model_uri:
            return None
        return PretrainedModel(settings.model_uri, PretrainedStore(settings.model_dir),
                               self.model_class.load_pretrained, settings.model_max_bytes,
                               settings.model_sha256, settings.model_fetch_timeout_seconds, settings.s3_endpoint_url)

    def _pretrained_start(self, wait: bool = True) -> tuple[str, dict]:
        """Where a project without a saved model starts: the pretrained model, else nothing.

        While MODEL_URI is loading (or after it failed) this raises ``ModelLoading`` /
        ``PretrainedError`` (``/predict`` answers 503), unless ``wait`` is off: training then
        starts from nothing rather than wait.
        """
        if self.pretrained is not None:
            try:
                return self.pretrained.get()
            except (ModelLoading, PretrainedError):
                if wait:
                    raise
        return INITIAL_VERSION, {}

    def store(self, project: str) -> ProjectStore:
        """One project's data (all of it goes through here)."""
        return self.stores.project(project)

    def build_model(self, project: str, config: str, train_output: dict | None = None,
                    version: str = INITIAL_VERSION) -> LabelStudioMLBase:
        """A model object for a project, handed this backend's settings."""
        return self.model_class(config, project, train_output=train_output, model_version=version,
                                settings=self.settings, extra_params=self.store(project).extra_params())

    def save_project_config(self, project: str, config: str) -> None:
        """Remember the labeling config Label Studio sent with a webhook (checked later, when used)."""
        self.store(project).save_label_config(config)

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
    def setup(self, project: str, config: str, extra_params: dict | None = None) -> str:
        """Check the config fits this model, remember it and the extra params, return the current version."""
        self.model_class.check_config(parse_label_config(config))
        if extra_params is not None:
            self.model_class.check_extra_params(extra_params)
        store = self.store(project)
        store.save_label_config(config)
        if extra_params is not None:
            store.save_extra_params(extra_params)
        self.stores.note_setup(project)
        return self.served_version(project)

    # --- model versions ----------------------------------------------------
    def versions_project(self, asked: str | None) -> str | None:
        """The project ``GET /versions`` is about: the one asked for, else the one set up last."""
        return asked or self.stores.last_setup()

    def versions(self, project: str) -> dict:
        """The project's kept versions, newest first, and which one serves."""
        store = self.store(project)
        versions = store.versions()
        if self.pretrained is not None and self.pretrained.version:
            versions.append(self.pretrained.version)  # the oldest: what the project started from
        return {"versions": versions, "current": self.served_version(project)}

    def use_version(self, project: str, version: str) -> str:
        """Roll back (or forward) to a kept version; every worker switches at its next request."""
        store = self.store(project)
        with store.training_lock():  # never between a training's save and its pointer write
            store.use_version(version)
        log.info("project %s now serves version %s", project, version)
        return version

    def served_version(self, project: str) -> str:
        """The version this process serves (or would serve) for ``project``: not a broken current one."""
        loaded = self._models.get(project)
        store = self.store(project)
        if loaded is not None and loaded.stamp == store.stamp():
            return loaded.model.model_version
        pretrained = self.pretrained.version if self.pretrained is not None else None
        return store.served_version() or pretrained or INITIAL_VERSION

    def model_problem(self, project: str) -> str | None:
        """Why the model served for ``project`` is not its current version (a broken file), or None."""
        loaded = self._models.get(project)
        store = self.store(project)
        if loaded is not None and loaded.stamp == store.stamp():
            return loaded.problem
        served = store.served_version()
        return store.problem(served)

    def readiness(self) -> dict[str, str | None]:
        """Each readiness check's problem, or None when it passed."""
        problems: dict[str, str | None] = {}
        for name, check in self.readiness_checks.items():
            try:
                check()
                problems[name] = None
            except Exception as exc:  # any failure means not ready; the message says which and why
                problems[name] = str(exc) or type(exc).__name__
        return problems

    def authorize_webhook(self, project: str, backend_host: str) -> None:
        """With basic auth on, make Label Studio's webhook to this backend send the credentials (background)."""
        self.webhook_auth.ensure(project, backend_host)

    def model(self, project: str, config: str) -> LabelStudioMLBase:
        """This process's model object for a project, rebuilt only when the config or version changed."""
        store = self.store(project)
        stamp = store.stamp()
        loaded = self._models.get(project)
        if loaded and loaded.stamp == stamp and (loaded.config is config or loaded.config == config):
            return loaded.model
        with self._lock:
            saved = store.load_model()
            version, output = saved or self._pretrained_start()
            model = self.build_model(project, config, output, version)
            problem = store.problem(saved[0] if saved else None)
            self._models[project] = _Loaded(config, stamp, model, problem)
            return model

    def predict(self, project: str, config: str | None, tasks: list[dict], context: dict | None = None) -> list[dict]:
        """One prediction per task; ``config`` None means the project's (see ``label_config``)."""
        kind = interactive_kind(context)
        parse_interaction(context)  # a malformed interaction is the request's error, whatever the model reads
        model = self.model(project, self.label_config(project, config))
        started = time.perf_counter()
        predictions = model.predict(tasks, context=context)
        if kind is not None:  # the annotator waits on these: their own latency figure
            self.metrics.interactive_done(kind, time.perf_counter() - started)
        if not isinstance(predictions, list) or len(predictions) != len(tasks):
            got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
            raise PredictionError(f"model.predict returned {got} predictions for {len(tasks)} tasks")
        for prediction in predictions:
            if not isinstance(prediction, dict) or not isinstance(prediction.get("result"), list):
                raise PredictionError("each prediction must be a dict with a 'result' list")
            prediction.setdefault("model_version", model.model_version)
        return predictions

    # --- recording annotations ----------------------------------------------
    def record_annotation(self, project: str, annotation: dict, task: dict) -> dict:
        """Keep an annotation from a webhook for the next training; a cancelled or empty one is forgotten.

        With ``TRAIN_EVERY_N`` set, every N-th recorded annotation requests a training.
        """
        record = normalize_annotation(annotation, task)
        store = self.store(project)
        if record["was_cancelled"] or not record["result"]:
            store.delete_annotation(record["id"])
            return {"status": "ignored", "reason": "cancelled or empty annotation"}
        store.save_annotation(record)
        every = self.settings.train_every_n
        if every and store.count_annotations() % every == 0:
            self.request_training(project)
        return {"status": "recorded", "annotation": record["id"]}

    def delete_annotations(self, project: str, annotation_ids: list[object]) -> list[object]:
        """Forget recorded annotations; returns the ids that were recorded (and are now gone)."""
        store = self.store(project)
        return [i for i in annotation_ids if store.delete_annotation(i)]

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

    def train(self, project: str, annotations: list[dict] | None = None,
              when_locked: Callable[[], object] | None = None) -> dict:
        """Train synchronously; on success save and make the new model current.

        A failure is recorded in the status and the previous model keeps serving. ``when_locked``
        runs once the project's training lock is held, before anything is read (the Redis queue
        takes the pending requests there).
        """
        store = self.store(project)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(store.training_lock())  # one training per project across processes
            except StorageError as exc:
                return self._failed_before_start(project, exc)
            if when_locked is not None:
                when_locked()
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
            version, output = saved or self._pretrained_start(wait=False)
            model = self.build_model(project, self.label_config(project), output, version)
            try:
                result = model.fit(usable)
            finally:
                self._note_skipped(project, status, getattr(model, "skipped", []))
            if not isinstance(result, dict):
                raise TypeError(f"fit must return a dict, returned {type(result).__name__}")
            status.update(state="succeeded", model_version=store.save_model(result))
            log.info("project %s trained on %d annotations: %s", project, len(usable), status["model_version"])
        except Exception as exc:
            log.error("training of project %s failed:\n%s", project, traceback.format_exc())
            status.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            status["finished_at"] = time.time()
            self.metrics.training_done(project, status)  # first: whoever sees the status finds it counted
            self._save_status(project, store, status)
        return status

    @staticmethod
    def _note_skipped(project: str, status: dict, skipped: list[str]) -> None:
        """Count what ``fit`` left out and name the first few: the user fixes those annotations."""
        if skipped:
            status["skipped"] = {"count": len(skipped), "examples": skipped[:5]}
            log.warning("training of project %s skipped %d items, first: %s", project, len(skipped), skipped[0])

    def train_in_child(self, project: str) -> None:
        """Train in a child process and wait (what the queue runs); record the outcome even if the child dies.

        The child records its own outcome; when it cannot (killed, crashed,
        never started, or MODEL_DIR refused the status), the status would say
        "queued" or "running" forever, so this process records, or remembers,
        why instead. The last good model keeps serving either way.
        """
        try:
            code, outcome = run_in_child(TrainingJob(self.model_class, self.settings, project),
                                         nice=self.settings.training_nice)
        except Exception as exc:  # e.g. a model class defined inside a function cannot be sent to a child
            log.error("could not start the training process of project %s: %s", project, exc)
            self._record_lost_training(project, "failed", f"could not start a training process: "
                                       f"{type(exc).__name__}: {exc}")
            return
        if isinstance(outcome, TrainingOutcome):
            self.metrics.training_done(project, outcome.status)  # counted here: /metrics is this process's
            if not outcome.saved:  # a full or read-only MODEL_DIR: keep the child's last word here
                self._unsaved_status[project] = outcome.status
            else:
                self._unsaved_status.pop(project, None)
        elif code != 0:
            state = "interrupted" if code < 0 else "failed"
            self._record_lost_training(project, state, f"the training process {describe_exit(code)} before it "
                                       "finished; see the backend's log")

    def _record_lost_training(self, project: str, state: str, why: str) -> None:
        store = self.store(project)
        if store.status().get("state") in ("queued", "running") and not store.training_running():
            now = time.time()
            status = {"state": state, "started_at": now, "finished_at": now,
                      "error": f"{why}; the previous model keeps serving; train again"}
            self.metrics.training_done(project, status)
            self._save_status(project, store, status)

    def request_training(self, project: str) -> None:
        """Queue a background training; the status says "queued" until it starts.

        ``QueueUnavailable`` (Redis unreachable) when it cannot be queued; the status is left as it was.
        """
        store = self.store(project)
        before = store.status()
        store.save_status({"state": "queued", "requested_at": time.time()})
        try:
            self.queue.request(project)
        except QueueUnavailable:
            if before.get("state") != "queued":  # else a queued training is still coming
                store.save_status(before)
            raise

    def status(self, project: str) -> dict:
        store = self.store(project)
        status = store.status()
        unsaved = self._unsaved_status.get(project)
        if unsaved and unsaved.get("started_at", 0) >= status.get("started_at", status.get("requested_at", 0)):
            status = dict(unsaved)  # this process's last word, which MODEL_DIR would not take
        if status.get("state") == "running" and not store.training_running():
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


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training child sends back: its final status, and whether MODEL_DIR took it."""

    status: dict
    saved: bool


@dataclass(frozen=True)
class TrainingJob:
    """One training, as sent to a child process (``training.run_in_child``): it must pickle."""

    model_class: type[LabelStudioMLBase]
    settings: Settings
    project: str

    def __call__(self) -> TrainingOutcome:
        backend = Backend(self.model_class, self.settings, metrics=Metrics())  # the parent counts the outcome
        status = backend.train(self.project)
        return TrainingOutcome(status, saved=self.project not in backend._unsaved_status)
