"""The training worker on Redis + RQ: ``python -m lsbackend worker`` and the job each work horse runs.

An entry module, like ``cli.py``: it builds a ``Trainer`` through the composition root
(``app.build_trainer``) and drives RQ; the queue's semantics (debounce, pending job, lease) are
``redis_queue``'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid

import redis
from rq import Worker, get_current_job

from .app import build_trainer
from .errors import QueueUnavailable
from .redis_queue import LEASE_SECONDS, RedisTrainingQueue, lease_key
from .settings import Settings

log = logging.getLogger(__name__)


class _Lease(threading.Thread):
    """Renews a key with a short time to live while the job runs; a killed job's key expires."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        super().__init__(name="training-lease", daemon=True)
        self.client, self.key = client, key
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.client.set(self.key, b"1", ex=LEASE_SECONDS)
            except redis.RedisError as exc:  # Redis away for a moment: the training itself goes on
                log.warning("cannot renew the training lease %s: %s", self.key, exc)
            self._stop_event.wait(1.0)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.delete(self.key)


def run_training(project: str) -> dict:
    """The RQ job (in a work horse): build a trainer from this worker's settings and train ``project``."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_training is an RQ job: it runs in a work horse (python -m lsbackend worker)")
    lease = _Lease(job.connection, lease_key(job.origin, job.id))  # first: requests now know the job lives
    lease.start()
    try:
        trainer = build_trainer()
        if not trainer.settings.redis_url:  # the worker's REDIS_URL was removed under it
            raise QueueUnavailable("the worker runs without REDIS_URL; set it to the replicas' Redis")
        return RedisTrainingQueue(trainer.settings).run(project, trainer, job.id)
    finally:
        lease.stop()


def run_worker(settings: Settings) -> int:
    """``python -m lsbackend worker``: train queued jobs until SIGTERM/SIGINT (then return 0).

    Redis unreachable at start: ``QueueUnavailable`` (exit 1), so a wrong REDIS_URL shows at once.
    Redis lost later: RQ's loop ends; this process lets a training in progress finish (its model
    is saved to the store, which does not need Redis), waits for Redis to answer again and takes
    jobs anew, without a restart. If RQ's loop ends while Redis answers (a bug, not an outage),
    it returns 1 so that a supervisor (Compose's restart policy, Kubernetes) starts a fresh worker.
    """
    build_trainer(settings)  # fails here, with the reason, on a bad MODEL_CLASS or MODEL_DIR
    if not settings.redis_url:
        raise QueueUnavailable("the worker needs REDIS_URL, e.g. REDIS_URL=redis://redis:6379/0")
    queue = RedisTrainingQueue(settings)
    queue.check()
    while True:
        worker = _Worker([queue.queue], connection=queue.redis, name=f"lsbackend-{uuid.uuid4().hex[:8]}",
                         job_monitoring_interval=MONITOR_SECONDS)
        worker.max_connection_wait_time = RETRY_SECONDS
        log.info("worker %s: training jobs of queue %r from %s", worker.name, settings.redis_queue, queue.url)
        try:
            worker.work(logging_level=settings.log_level)
        except redis.RedisError as exc:  # e.g. while deregistering from a Redis that went away
            log.warning("worker %s: %s", worker.name, exc)
        if worker.stop_signalled:
            return 0
        if not _wait_out_outage(worker, queue):
            log.error("worker %s: RQ's loop ended while Redis answers (see above); exiting with 1 so that a "
                      "supervisor starts a new worker", worker.name)
            return 1


MONITOR_SECONDS = 10  # how often a busy worker heartbeats (and notices a lost Redis)
RETRY_SECONDS = 5.0  # between attempts to reach Redis again, at most


def _wait_out_outage(worker: _Worker, queue: RedisTrainingQueue) -> bool:
    """After RQ's loop ended: if Redis is away, let the running training finish, wait for Redis, True."""
    try:
        queue.check()
        return False
    except QueueUnavailable as exc:
        log.error("worker %s: lost Redis (%s); waiting for it to come back", worker.name, exc)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # RQ's handlers need Redis; now a signal just ends us
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if worker.pubsub_thread is not None:
        with contextlib.suppress(Exception):  # its reconnect loop would outlive this worker object
            worker.pubsub_thread.stop()
    if worker.horse_pid:
        log.info("worker %s: the training in progress (pid %d) goes on; waiting for it", worker.name,
                 worker.horse_pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(worker.horse_pid, 0)
    while True:
        try:
            queue.check()
        except QueueUnavailable:
            time.sleep(RETRY_SECONDS)
            continue
        log.info("worker %s: Redis is back; taking jobs again", worker.name)
        return True


class _Worker(Worker):
    """RQ's forking worker (one work horse per job), remembering whether a signal stopped it."""

    stop_signalled = False

    def request_stop(self, signum: int, frame: object) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)
