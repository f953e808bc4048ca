"""Background training: one job at a time per project, debounced.

Label Studio sends ``START_TRAINING`` *before* the webhook that carries the
annotation which caused it, so a job waits ``TRAIN_DEBOUNCE_SECONDS`` after
the last request before it starts; requests arriving while a job runs make
it run once more afterwards, never twice at once. The queue sits behind a
tiny interface (``request``) so a Redis-backed queue can replace it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class TrainingQueue(Protocol):
    def request(self, project: str) -> None:
        """Ask for a training of ``project`` soon; returns at once."""


@dataclass
class _Job:
    timer: threading.Timer | None = None
    running: bool = False
    again: bool = False


class ThreadTrainingQueue:
    """Runs ``train(project)`` in a background thread of this process."""

    def __init__(self, train: Callable[[str], object], debounce_seconds: float) -> None:
        self._train = train
        self._debounce = debounce_seconds
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def request(self, project: str) -> None:
        with self._lock:
            job = self._jobs.setdefault(project, _Job())
            if job.running:
                job.again = True
                return
            if job.timer is not None:
                job.timer.cancel()
            job.timer = threading.Timer(self._debounce, self._run, args=(project,))
            job.timer.daemon = True
            job.timer.start()

    def _run(self, project: str) -> None:
        with self._lock:
            job = self._jobs[project]
            job.timer, job.running = None, True
        while True:
            try:
                self._train(project)
            except Exception:  # the train function records failures; never kill the thread silently
                log.exception("training of project %s crashed", project)
            with self._lock:
                if not job.again:
                    job.running = False
                    return
                job.again = False

    def idle(self) -> bool:
        """True when no job is waiting or running (for tests and shutdown)."""
        with self._lock:
            return all(j.timer is None and not j.running for j in self._jobs.values())
