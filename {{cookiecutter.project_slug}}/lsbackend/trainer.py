"""Training a project's model, apart from serving it: ``Trainer``.

A ``Trainer`` collects a project's annotations, runs the model's ``fit`` from where the project
stands (its saved model, else the ``MODEL_URI`` model, else nothing), saves the result as the
new current version and records the training's status. The serving process (``Backend``), a
training child (``python -m lsbackend.train_job``) and an RQ work horse each hold one; only the
serving process also serves, so only it loads ``MODEL_URI`` at start.

A trainer that needs the ``MODEL_URI`` model waits for it: a training must start from the user's
weights, never from nothing because they were still loading. If they cannot be loaded the
training fails with the reason, and the last good model keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .base import INITIAL_VERSION, LabelStudioMLBase
from .evaluation import Review, held_out_share, record_training, review, split
from .label_config import read_config_file
from .label_studio_api import LabelStudioClient, LabelStudioError, annotations_from_tasks
from .metrics import Metrics
from .pretrained import PretrainedModel, start_loading
from .project_model import build_model, project_config
from .settings import Settings
from .storage import ModelStore, ProjectStore, StorageError
from .training import describe_exit, run_in_child

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingJob:
    """One training, as sent to a child process (``training.run_in_child``): it must pickle.

    The child (``train_job``) builds a ``Trainer`` from it and runs ``trainer.train(project)``.
    """

    model_class: type[LabelStudioMLBase]
    settings: Settings
    project: str


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training child sends back: its final status, and whether MODEL_DIR took it."""

    status: dict
    saved: bool


class Trainer:
    """Trains projects of one model class with one store; records every outcome, success or not."""

    def __init__(self, model_class: type[LabelStudioMLBase], settings: Settings, stores: ModelStore,
                 metrics: Metrics, pretrained: PretrainedModel | None = None) -> None:
        self.model_class = model_class
        self.settings = settings
        self.stores = stores
        self.metrics = metrics
        self.default_config = read_config_file(settings.label_config_path)
        #: Statuses a full or read-only MODEL_DIR refused: this process's last word on those projects.
        self.unsaved_status: dict[str, dict] = {}
        self._pretrained = pretrained  # the serving process hands in the one it is loading already
        self._pretrained_lock = threading.Lock()

    # --- where a training starts ---------------------------------------------
    def pretrained(self) -> PretrainedModel | None:
        """The ``MODEL_URI`` model, its loading started here on first need; None without MODEL_URI."""
        if not self.settings.model_uri:
            return None
        with self._pretrained_lock:
            if self._pretrained is None:
                self._pretrained = start_loading(self.settings, self.model_class.load_pretrained)
            return self._pretrained

    def starting_point(self, store: ProjectStore) -> tuple[str, dict]:
        """(version, train_output) a training starts from: the saved model, else MODEL_URI's (waited for)."""
        saved = store.load_model()
        if saved is not None:
            return saved
        pretrained = self.pretrained()
        if pretrained is None:
            return INITIAL_VERSION, {}
        pretrained.wait()
        return pretrained.get()  # PretrainedError when it failed: the training fails with the reason

    # --- annotations -----------------------------------------------------------
    def collect_annotations(self, project: str) -> list[dict]:
        """Annotations recorded from webhooks, plus the project's from Label Studio when configured."""
        by_id = {a["id"]: a for a in self.stores.project(project).annotations()}
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

    # --- one training ----------------------------------------------------------
    def train(self, project: str, annotations: list[dict] | None = None,
              when_locked: Callable[[], object] | None = None) -> dict:
        """Train synchronously; on success save and make the new model current.

        A failure is recorded in the status and the previous model keeps serving. ``when_locked``
        runs once the project's training lock is held, before anything is read (the Redis queue
        takes the pending requests there).
        """
        store = self.stores.project(project)
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
        self.unsaved_status[project] = status
        return status

    def save_status(self, project: str, store: ProjectStore, status: dict) -> bool:
        """Record a training status; when MODEL_DIR refuses, keep it in memory so /training still tells."""
        try:
            store.save_status(status)
        except StorageError as exc:
            log.error("project %s: %s", project, exc)
            self.unsaved_status[project] = dict(status)
            return False
        self.unsaved_status.pop(project, None)
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
            self._fit_and_save(project, store, usable, status)
        except Exception as exc:
            log.error("training of project %s failed:\n%s", project, traceback.format_exc())
            status.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            status["finished_at"] = time.time()
            self.metrics.training_done(project, status)  # first: whoever sees the status finds it counted
            self.save_status(project, store, status)
        return status

    def _fit_and_save(self, project: str, store: ProjectStore, usable: list[dict], status: dict) -> None:
        """Fit on all but the held-out slice, score the result there, save it; serve it unless it is worse."""
        version, output = self.starting_point(store)
        config = project_config(store, self.default_config)
        model = build_model(self.model_class, self.settings, project, store, config, output, version)
        fraction = held_out_share(model, len(usable), self.settings)
        train_on, held_out = split(usable, fraction)
        try:
            result = model.fit(train_on)
        finally:
            self._note_skipped(project, status, getattr(model, "skipped", []))
        if not isinstance(result, dict):
            raise TypeError(f"fit must return a dict, returned {type(result).__name__}")
        verdict = self._review(project, store, config, result, held_out, version, output)
        made = store.save_model(result, current=verdict.promote)
        status.update(state="succeeded", model_version=made, held_out=len(held_out), **verdict.status(made))
        record_training(store, made, fraction, len(train_on), verdict)
        if not verdict.promote:
            log.warning("project %s: %s not served: %s", project, made, verdict.reason)
        log.info("project %s trained on %d annotations: %s", project, len(usable), made)

    def _review(self, project: str, store: ProjectStore, config: str, result: dict, held_out: list[dict],
                version: str, output: dict) -> Review:
        """Score a new model on the held-out slice against the version it would replace (``evaluation.review``)."""
        pretrained = self._pretrained.version if self._pretrained is not None else None
        fraction = 1.0 if version == pretrained else store.evaluations().get(version, {}).get("held_out")
        previous = None if version == INITIAL_VERSION else (version, output, fraction or 0.0)

        def build(out: dict, ver: str) -> LabelStudioMLBase:
            return build_model(self.model_class, self.settings, project, store, config, out, ver)

        try:
            return review(build, result, held_out, previous, self.settings.promote_rule, self.settings.promote_margin)
        except Exception as exc:  # a model that cannot be scored is still served: scoring is advice
            log.exception("project %s: the new version could not be scored", project)
            return Review(True, f"could not score it ({type(exc).__name__}: {exc})"[:300])

    @staticmethod
    def _note_skipped(project: str, status: dict, skipped: list[str]) -> None:
        """Count what ``fit`` left out and name the first few: the user fixes those annotations."""
        if skipped:
            status["skipped"] = {"count": len(skipped), "examples": skipped[:5]}
            log.warning("training of project %s skipped %d items, first: %s", project, len(skipped), skipped[0])

    # --- a training in a child process ----------------------------------------------
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
                self.unsaved_status[project] = outcome.status
            else:
                self.unsaved_status.pop(project, None)
        elif code != 0:
            state = "interrupted" if code < 0 else "failed"
            self._record_lost_training(project, state, f"the training process {describe_exit(code)} before it "
                                       "finished; see the backend's log")

    def _record_lost_training(self, project: str, state: str, why: str) -> None:
        store = self.stores.project(project)
        if store.status().get("state") in ("queued", "running") and not store.training_running():
            now = time.time()
            status = {"state": state, "started_at": now, "finished_at": now,
                      "error": f"{why}; the previous model keeps serving; train again"}
            self.metrics.training_done(project, status)
            self.save_status(project, store, status)

    def run_job(self, job: TrainingJob) -> TrainingOutcome:
        """What a training child does with its job: train, and say whether MODEL_DIR took the status."""
        status = self.train(job.project)
        return TrainingOutcome(status, saved=job.project not in self.unsaved_status)
