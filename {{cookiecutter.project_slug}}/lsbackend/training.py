"""Background training: one job at a time per project, debounced, in a child process.

Label Studio sends ``START_TRAINING`` *before* the webhook that carries the
annotation which caused it, so a job waits ``TRAIN_DEBOUNCE_SECONDS`` after
the last request before it starts; requests arriving while a job runs make
it run once more afterwards, never twice at once. The queue sits behind a
tiny interface (``request``); ``app.open_queue`` picks this process's thread
queue or, with ``REDIS_URL`` set, the Redis + RQ queue of ``redis_queue``
(training then runs in ``python -m lsbackend worker`` processes, not here).

The fit itself never runs in a serving process: a CPU-bound fit holds the
GIL and its allocations grow the worker for good, so every training runs in
a fresh ``python -m lsbackend.train_job`` process (``run_in_child``) while a
thread of the serving process only waits for it. Why a plain subprocess and
not ``multiprocessing``: the child needs nothing from the parent's memory
(it loads the model from the store, like any worker), a subprocess starts no
resource tracker or fork server that would stay resident next to an idle
worker, and it shows up in ``ps`` by name. The parent picks the new model up
through the store's current-version pointer, as every worker does.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import QueueUnavailable

__all__ = ["CHILD_MODULE", "QueueUnavailable", "ThreadTrainingQueue", "TrainingQueue", "describe_exit", "run_in_child"]
log = logging.getLogger(__name__)


class TrainingQueue(Protocol):
    def request(self, project: str) -> None:
        """Ask for a training of ``project`` soon; returns at once. Raises ``QueueUnavailable``."""


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


#: The module a training child runs (``python -m lsbackend.train_job``).
CHILD_MODULE = "lsbackend.train_job"
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def run_in_child(job: object, nice: int = 0) -> tuple[int, object]:
    """Train ``job`` (a ``trainer.TrainingJob``) in a new Python process and wait; return its exit code and outcome.

    The exit code is negative when a signal killed the child; the outcome is
    None when the child did not get to send one. ``job`` must pickle (a
    module-level model class and plain data). The child gets this
    process's ``sys.path`` before it unpickles the job, so it imports
    ``model.py`` (or a ``MODEL_CLASS`` module) from the same places. Its
    output goes where this process's goes (the server log); the result comes
    back through a pipe of its own, so a ``print`` in ``fit`` cannot garble it.
    The child lowers its priority by ``nice`` before anything else (see ``train_job``).
    """
    payload = pickle.dumps(job, protocol=5)  # fails here, in the parent, when the job cannot be sent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))}
    result_read, result_write = os.pipe()
    try:
        boot = pickle.dumps(([os.path.abspath(p) for p in sys.path], result_write, nice), protocol=5)
        child = subprocess.Popen([sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE, env=env,
                                 pass_fds=(result_write,))
    finally:
        os.close(result_write)  # the child holds the only write end now: EOF comes when it is done
    with os.fdopen(result_read, "rb") as results:
        assert child.stdin is not None  # stdin=PIPE above
        try:
            child.stdin.write(boot + payload)
            child.stdin.close()
        except BrokenPipeError:  # the child died at once; its exit code says how
            pass
        raw = results.read()
    code = child.wait()
    try:
        return code, pickle.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 (a child killed mid-write leaves a partial result: there is none)
        return code, None


def describe_exit(code: int) -> str:
    """An exit code in words: ``killed by SIGKILL``, ``exited with code 1``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
