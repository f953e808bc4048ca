"""Prometheus metrics (prometheus_client), merged across gunicorn workers.

Under gunicorn every worker is its own process. ``gunicorn_conf.py`` points
``PROMETHEUS_MULTIPROC_DIR`` at a directory (emptied at start) before any
worker imports prometheus_client, so each worker writes its figures to files
there and ``/metrics``, whichever worker answers it, reads and merges them all.
Without that variable (``serve``, tests, the CLI) figures are this process's own.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100)
TRAINING_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    """Every figure the backend reports; one object per app (tests build many)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: str = "") -> None:
        self.multiprocess_dir = multiprocess_dir
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lsbackend_requests", "Requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("lsbackend_request_duration_seconds", "Time to answer a request, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("lsbackend_requests_in_flight", "Requests being answered now.",
                               multiprocess_mode="livesum", registry=r)
        self.interactive_latency = Histogram(
            "lsbackend_interactive_duration_seconds", "Time the model took for an interactive call (the annotator "
            "waits on it): kind=open (a task opened) or region (the annotator made a region).", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.tasks_predicted = Counter("lsbackend_tasks_predicted", "Tasks predicted.", registry=r)
        self.failed_tasks = Counter("lsbackend_failed_tasks", "Tasks answered with no regions and the reason in "
                                    "'error' (media not loaded, a text over MAX_TEXT_CHARS, ...).", registry=r)
        self.trainings = Counter("lsbackend_trainings", "Trainings finished, by outcome (succeeded, failed, "
                                 "skipped).", ["outcome"], registry=r)
        self.training_seconds = Histogram("lsbackend_training_duration_seconds", "Time a training took, by outcome.",
                                          ["outcome"], buckets=TRAINING_BUCKETS, registry=r)
        self.last_success = Gauge("lsbackend_last_successful_training_timestamp_seconds",
                                  "When a project's last successful training finished (Unix time).", ["project"],
                                  multiprocess_mode="max", registry=r)
        self.model_version = Gauge("lsbackend_model_version_info", "The model version served for a project: 1 for "
                                   "the current one, 0 for earlier ones.", ["project", "version"],
                                   multiprocess_mode="mostrecent", registry=r)
        self.not_promoted = Counter("lsbackend_trainings_not_promoted", "Trainings whose new version was kept but "
                                    "not served: worse than the served one on held-out annotations.", ["project"],
                                    registry=r)
        self.held_out_score = Gauge("lsbackend_held_out_score", "The last trained version's score (F1) on the "
                                    "annotations held out of its training.", ["project"],
                                    multiprocess_mode="mostrecent", registry=r)
        self._versions: dict[str, str] = {}

    # --- recording --------------------------------------------------------
    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def interactive_done(self, kind: str, seconds: float) -> None:
        self.interactive_latency.labels(kind).observe(seconds)

    def predicted(self, predictions: list[dict]) -> None:
        self.tasks_predicted.inc(len(predictions))
        failed = sum(1 for p in predictions if isinstance(p, dict) and p.get("error"))  # failed_task's mark
        if failed:
            self.failed_tasks.inc(failed)

    def training_done(self, project: str, status: dict) -> None:
        outcome = str(status.get("state", "unknown"))
        started, finished = status.get("started_at"), status.get("finished_at") or time.time()
        self.trainings.labels(outcome).inc()
        if isinstance(started, int | float):
            self.training_seconds.labels(outcome).observe(max(0.0, finished - started))
        promotion = status["promotion"] if isinstance(status.get("promotion"), dict) else {}
        if promotion.get("promoted") is False:
            self.not_promoted.labels(project).inc()
        if isinstance(promotion.get("score", {}).get("score"), int | float):
            self.held_out_score.labels(project).set(promotion["score"]["score"])
        if outcome == "succeeded":
            self.last_success.labels(project).set(finished)
            if promotion.get("promoted") is not False:  # a version kept but not promoted is not served
                self.serving(project, str(status.get("model_version")))

    def serving(self, project: str, version: str) -> None:
        """Record the version served for ``project``; the one seen before drops to 0."""
        previous = self._versions.get(project)
        if previous == version:
            return
        if previous is not None:
            self.model_version.labels(project, previous).set(0)
        self.model_version.labels(project, version).set(1)
        self._versions[project] = version

    # --- exposition -------------------------------------------------------
    def render(self) -> bytes:
        """The text format: every worker's figures merged in multiprocess mode, else this process's."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
        return generate_latest(merged)


def clean_multiprocess_dir(path: str) -> None:
    """Empty the metrics directory at start, so figures of an earlier run are not merged in."""
    from pathlib import Path

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_process_dead(pid: int, path: str) -> None:
    """Drop a dead worker's live gauges (in-flight requests); its counters keep counting."""
    multiprocess.mark_process_dead(pid, path)
