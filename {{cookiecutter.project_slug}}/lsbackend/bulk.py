"""Bulk pre-annotation: predict a whole Label Studio project and store the predictions there.

"Retrieve Predictions" sends every selected task in one request and gives up
after 100 s, so a large project never gets pre-annotated that way. This asks
Label Studio for the tasks that have no prediction of the version being served
(a page at a time, by id), predicts them in batches and writes the predictions
back with the prediction import API. So a run that was stopped (Ctrl-C, a
crash, a lost connection) resumes where it stopped when started again, and a
second run after it finished does nothing.

Where the time goes (measured against Label Studio 1.23.2 with 20,000 tasks):
predicting is milliseconds; listing 500 tasks with only ``id`` and ``data`` is
a fraction of a second; but every import call recounts the predictions of
every task in the project that has any, about a millisecond per such task, so
the number of import calls, not their size, sets the wall time. Predictions
are therefore sent ``import_size`` at a time (a few thousand), not one call per
batch; on Ctrl-C the predictions already made are sent before stopping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .label_studio_api import LabelStudioClient
from .service import Backend

# A slow model (images, say) sends what it has at least this often, so progress shows and a crash loses little.
SEND_EVERY_SECONDS = 60.0


@dataclass
class PushReport:
    """What a push did; ``failed`` names tasks whose prediction was not stored (retried next run)."""

    version: str = ""
    total: int = 0
    pushed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # where the time went: waiting for Label Studio to list tasks, to import predictions; and predicting
    list_seconds: float = 0.0
    import_seconds: float = 0.0
    predict_seconds: float = 0.0

    @property
    def done(self) -> int:
        """Tasks handled so far: stored, skipped as already predicted, or failed."""
        return self.pushed + self.skipped + len(self.failed)

    @property
    def per_second(self) -> float:
        return self.pushed / self.seconds if self.seconds else 0.0


@dataclass
class _Push:
    """One run's moving parts: where it is, and the predictions made but not yet sent."""

    backend: Backend
    client: LabelStudioClient
    project: str
    config: str
    report: PushReport
    progress: Callable[[int, int], None] | None
    pending: list[dict] = field(default_factory=list)
    last_sent: float = field(default_factory=time.monotonic)

    def tasks(self, after: int, page_size: int) -> tuple[list[dict], int]:
        started = time.monotonic()
        try:
            return self.client.tasks_without_prediction(self.project, self.report.version, after, page_size)
        finally:
            self.report.list_seconds += time.monotonic() - started

    def predict(self, batch: list[dict]) -> None:
        started = time.monotonic()
        predictions = self.backend.predict(self.project, self.config,
                                           [{"id": t["id"], "data": t.get("data") or {}} for t in batch])
        self.report.predict_seconds += time.monotonic() - started
        for task, prediction in zip(batch, predictions, strict=True):
            if prediction.get("error"):  # e.g. an image that could not be loaded: retried by the next run
                self.report.failed.append(f"task {task['id']}: {prediction['error']}")
                continue
            self.pending.append({"task": task["id"], "result": prediction["result"],
                                 "score": prediction.get("score"),
                                 "model_version": prediction.get("model_version", self.report.version)})

    def send(self) -> None:
        """Import the pending predictions in one call; count any Label Studio created fewer of as failed."""
        if not self.pending:
            return
        sent, self.pending = self.pending, []
        started = time.monotonic()
        try:
            created = self.client.import_predictions(self.project, sent)
        finally:
            self.last_sent = time.monotonic()
            self.report.import_seconds += self.last_sent - started
        self.report.pushed += min(created, len(sent))
        if created < len(sent):
            self.report.failed.append(f"Label Studio stored {created} of {len(sent)} predictions for tasks "
                                      f"{sent[0]['task']}..{sent[-1]['task']}; its log says why")
        self.tell()

    def tell(self) -> None:
        if self.progress:
            self.progress(self.report.done, self.report.total)


def push_predictions(backend: Backend, client: LabelStudioClient, project: str, batch_size: int = 100,
                     page_size: int = 500, import_size: int = 2000,
                     progress: Callable[[int, int], None] | None = None) -> PushReport:
    """Predict every task of ``project`` not yet predicted by the served version, and store the predictions.

    Tasks are predicted ``batch_size`` at a time and their predictions sent to
    Label Studio once ``import_size`` have gathered (or a minute has passed). ``progress(done, total)``
    is called after each import with the tasks handled so far.
    """
    config = client.project(project)["label_config"]
    report = PushReport(version=backend.setup(project, config))
    started = time.monotonic()
    report.total = client.task_count(project)
    run = _Push(backend, client, project, config, report, progress)
    tasks, remaining = run.tasks(0, page_size)
    report.skipped = max(report.total - remaining, 0)
    run.tell()
    try:
        while tasks:
            for start in range(0, len(tasks), batch_size):
                run.predict(tasks[start : start + batch_size])
                if len(run.pending) >= import_size or time.monotonic() - run.last_sent >= SEND_EVERY_SECONDS:
                    run.send()
            tasks, _ = run.tasks(tasks[-1]["id"], page_size)
    except KeyboardInterrupt:
        run.send()  # keep what was predicted; the next run starts after it
        raise
    run.send()
    run.tell()
    report.seconds = time.monotonic() - started
    return report
