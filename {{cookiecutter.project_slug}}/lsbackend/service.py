"""The backend's work, apart from HTTP: models per project, predicting, versions, recording.

``Backend`` is the only door to a project's data: the server, the CLI and the
tests all drive this one object, and it reaches the data only through the
store (``app.open_store`` picks it), never by opening files itself. Training is its
``Trainer``'s (``trainer.py``), which training children and RQ workers build
on their own, without a ``Backend``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .base import INITIAL_VERSION, LabelStudioMLBase
from .errors import QueueUnavailable, StorageError, StorageWriteError
from .evaluation import version_scores
from .interaction import interactive_kind, parse_interaction
from .label_config import parse_label_config
from .label_studio_api import normalize_annotation
from .metrics import Metrics
from .patterns import Patterns
from .pretrained import PretrainedModel
from .project_model import build_model, project_config
from .score_filter import leave_out_unsure
from .settings import Settings
from .storage import LocalModelStore, ModelStore, ProjectStore
from .task_data import check_task_data
from .trainer import Trainer
from .training import ThreadTrainingQueue, TrainingQueue
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


def _local_store(settings: Settings) -> ModelStore:
    """The plain store: MODEL_DIR. Another one (MODEL_STORE) is the composition root's to open."""
    if settings.model_store:
        raise ValueError(f"MODEL_STORE={settings.model_store} needs the store lsbackend.app.open_store opens: "
                         "build the backend with lsbackend.app.build_backend(settings)")
    return LocalModelStore(settings.model_dir, settings.keep_versions)


def _thread_queue(settings: Settings, trainer: Trainer) -> TrainingQueue:
    """The plain queue: a thread of this process, each training in a child process. Redis is ``app``'s."""
    if settings.redis_url:
        raise ValueError("REDIS_URL needs the queue lsbackend.app.open_queue opens: build the backend with "
                         "lsbackend.app.build_backend(settings)")
    return ThreadTrainingQueue(trainer.train_in_child, settings.train_debounce_seconds)


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
        trainer: Trainer | None = None,
        readiness: dict[str, Callable[[], object]] | None = None,
    ) -> None:
        """The parts come from the composition root (``app.build_backend``). Left out, they are the
        plain ones: the store under MODEL_DIR, trainings in a child process queued by a thread of this
        process; settings that ask for S3 (MODEL_STORE) or Redis (REDIS_URL) need ``app``'s parts."""
        self.model_class = model_class
        self.settings = settings
        self.stores = store or _local_store(settings)  # raises StorageError at start-up, not at the first training
        self.metrics = metrics or Metrics(settings.metrics_dir)
        self.trainer = trainer or Trainer(model_class, settings, self.stores, self.metrics)
        # Serving loads MODEL_URI at once, in the background (each process holds its own copy).
        self.pretrained: PretrainedModel | None = self.trainer.pretrained()
        self.default_config = self.trainer.default_config
        self.queue = queue or _thread_queue(settings, self.trainer)
        #: What /ready checks: name -> a callable that raises when that part cannot serve. Add your own
        #: (a queue, Redis) with ``backend.readiness_checks["name"] = check``.
        self.readiness_checks = dict(readiness) if readiness is not None else {"model_store": self.stores.check}
        self._models: dict[str, _Loaded] = {}
        self.webhook_auth = WebhookAuthorizer(settings)
        self._lock = threading.Lock()
        self.patterns = Patterns.load(settings.patterns_file) if settings.patterns_file else None  # cold start

    def _pretrained_start(self) -> tuple[str, dict]:
        """Where serving starts for a project without a saved model: the pretrained model, else nothing.

        While MODEL_URI is loading (or after it failed) this raises ``ModelLoading`` /
        ``PretrainedError`` (``/predict`` answers 503).
        """
        if self.pretrained is not None:
            return self.pretrained.get()
        return INITIAL_VERSION, {}

    def store(self, project: str) -> ProjectStore:
        """One project's data (all of it goes through here)."""
        return self.stores.project(project)

    def build_model(self, project: str, config: str, train_output: dict | None = None,
                    version: str = INITIAL_VERSION) -> LabelStudioMLBase:
        """A model object for a project, handed this backend's settings."""
        return build_model(self.model_class, self.settings, project, self.store(project), config, train_output,
                           version)

    def save_project_config(self, project: str, config: str) -> None:
        """Remember the labeling config Label Studio sent with a webhook (checked later, when used)."""
        self.store(project).save_label_config(config)

    def label_config(self, project: str, given: str | None = None) -> str:
        """The config to use: the one sent, else the project's last, else the repo's default."""
        return project_config(self.store(project), self.default_config, given)

    # --- setup and predict -------------------------------------------------
    def setup(self, project: str, config: str, extra_params: dict | None = None) -> str:
        """Check the config fits this model, remember it and the extra params, return the current version."""
        control, obj = self.model_class.check_config(parse_label_config(config))
        if self.patterns is not None:
            self.patterns.check(control, obj)
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
        return {"versions": versions, "current": self.served_version(project), "evaluations": version_scores(store)}

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
            version = loaded.model.model_version
        else:
            pretrained = self.pretrained.version if self.pretrained is not None else None
            version = store.served_version() or pretrained or INITIAL_VERSION
        # before the first training the patterns answer: Label Studio and ``predict --push`` ask for that version
        return self.patterns.version if self.patterns is not None and version == INITIAL_VERSION else version

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
        check_task_data(model, tasks)
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
        predictions = leave_out_unsure(predictions, getattr(model, "score_threshold", 0.0))
        if self.patterns is not None:  # before the first training, or merged in with PATTERNS_MERGE
            predictions = self.patterns.apply(model, tasks, predictions, self.settings.patterns_merge)
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

    # --- training (the trainer's work) ---------------------------------------
    def collect_annotations(self, project: str) -> list[dict]:
        """Annotations recorded from webhooks, plus the project's from Label Studio when configured."""
        return self.trainer.collect_annotations(project)

    def train(self, project: str, annotations: list[dict] | None = None,
              when_locked: Callable[[], object] | None = None) -> dict:
        """Train synchronously in this process (the CLI's ``train``, tests); see ``Trainer.train``."""
        return self.trainer.train(project, annotations, when_locked)

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
        unsaved = self.trainer.unsaved_status.get(project)
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
            evaluations=version_scores(store),
        )
        problem = self.model_problem(project)
        if problem:
            status["warning"] = problem
        return status
