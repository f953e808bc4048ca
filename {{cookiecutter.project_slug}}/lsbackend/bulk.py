"""Bulk pre-annotation: predict a whole Label Studio project and store the predictions there.

"Retrieve Predictions" sends every selected task in one request and gives up
after 100 s, so a large project never gets pre-annotated that way. This pages
through the project's tasks with the Label Studio API instead, predicts in
batches and writes each batch back with the prediction import API. A task that
already carries a prediction of the version being served is skipped, so a run
that was stopped (Ctrl-C, a crash, a lost connection) resumes where it stopped
when started again, and a second run after it finished does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .label_studio_api import LabelStudioClient
from .service import Backend


@dataclass
class PushReport:
    """What a push did; ``failed`` names tasks whose prediction carried an error (not stored, retried next run)."""

    version: str = ""
    total: int = 0
    pushed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.pushed / self.seconds if self.seconds else 0.0


def predicted_with(task: dict, version: str) -> bool:
    """Whether Label Studio already holds a prediction of ``version`` for this task."""
    found = task.get("predictions") or []
    return any(isinstance(p, dict) and p.get("model_version") == version for p in found)


def push_predictions(backend: Backend, client: LabelStudioClient, project: str, batch_size: int = 100,
                     page_size: int = 500, progress: Callable[[int, int], None] | None = None) -> PushReport:
    """Predict every task of ``project`` not yet predicted by the served version, and store the predictions.

    ``progress(done, total)`` is called after each batch with the tasks handled so far.
    """
    config = client.project(project)["label_config"]
    report = PushReport(version=backend.setup(project, config))
    started, page = time.monotonic(), 1
    while True:
        tasks, report.total = client.tasks_page(project, page, page_size)
        todo = [t for t in tasks if not predicted_with(t, report.version)]
        report.skipped += len(tasks) - len(todo)
        for start in range(0, len(todo), batch_size):
            _push_batch(backend, client, project, config, todo[start : start + batch_size], report)
            if progress:
                progress(report.pushed + report.skipped + len(report.failed), report.total)
        if progress and not todo:
            progress(report.pushed + report.skipped + len(report.failed), report.total)
        if not tasks or page * page_size >= report.total:
            break
        page += 1
    report.seconds = time.monotonic() - started
    return report


def _push_batch(backend: Backend, client: LabelStudioClient, project: str, config: str, batch: list[dict],
                report: PushReport) -> None:
    predictions = backend.predict(project, config, [{"id": t["id"], "data": t.get("data") or {}} for t in batch])
    keep = []
    for task, prediction in zip(batch, predictions, strict=True):
        if prediction.get("error"):  # e.g. an image that could not be loaded: retried by the next run
            report.failed.append(f"task {task['id']}: {prediction['error']}")
            continue
        keep.append({"task": task["id"], "result": prediction["result"], "score": prediction.get("score"),
                     "model_version": prediction.get("model_version", report.version)})
    if keep:
        client.import_predictions(project, keep)
    report.pushed += len(keep)
