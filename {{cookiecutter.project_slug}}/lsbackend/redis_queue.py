"""Training on Redis + RQ workers (``REDIS_URL``): any number of replicas enqueue, workers train.

A replica's ``request`` never trains: it enqueues an RQ job whose payload is
the project id, and ``python -m lsbackend worker`` processes run it (each
job in RQ's forked work horse, with a ``Trainer`` built by ``app.py`` from
the worker's own settings; the entry points are in ``worker.py``). The semantics of the thread queue hold across
replicas and workers, kept in three Redis keys per project:

- ``debounce``: set on every request with a time to live of
  ``TRAIN_DEBOUNCE_SECONDS`` (Redis' clock, not the replicas'); a job starts
  training only once it is gone, i.e. that long after the LAST request;
- ``pending``: the id of the job that will serve the requests made so far.
  A request while it is set enqueues nothing, so any number of requests
  during a training make exactly one more. The job clears it only once it
  holds the store's training lock, right before it reads the annotations;
- ``alive:<job>``: a lease the running job renews every second. A pending
  job that is neither queued nor alive (its worker was killed, Redis lost
  it) is replaced by the next request instead of swallowing it forever.

One training per project at a time stays the store's promise
(``ProjectStore.training_lock``); a killed worker's training shows up as
"interrupted" from every replica through the store's status and lock probe.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from .errors import QueueUnavailable

if TYPE_CHECKING:
    from .settings import Settings
    from .trainer import Trainer

log = logging.getLogger(__name__)

#: The job function, by name: a replica enqueues it without importing the worker's code (``worker.py``).
JOB_FUNCTION = "lsbackend.worker.run_training"
LEASE_SECONDS = 15  # a job that stopped renewing its lease this long ago is gone
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
# Clear ``pending`` only if it still names this job (another request may have replaced a dead one).
_CLAIM = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# Take ``pending`` for a new job if it is empty or still names the job found dead.
_REPLACE = ("local cur = redis.call('GET', KEYS[1]) "
            "if cur == false or cur == ARGV[2] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0")


def redacted(url: str) -> str:
    """``REDIS_URL`` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"


class RedisTrainingQueue:
    """The ``TrainingQueue`` of replicas and workers that share one Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = redacted(settings.redis_url)
        # Short timeouts: a request that cannot enqueue answers 503 in seconds, not a minute later.
        # redis-py drops a broken connection and opens a new one on the next call: no restart needed.
        self.redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10,
                                          health_check_interval=15)
        self.queue = Queue(settings.redis_queue, connection=self.redis)
        self.prefix = f"{settings.redis_queue}:training"

    def _key(self, project: str, what: str) -> str:
        return f"{self.prefix}:{project}:{what}"

    def _unavailable(self, exc: Exception, what: str) -> QueueUnavailable:
        """The error a request answers 503 with; its start fits in a reason phrase (200 characters)."""
        return QueueUnavailable(f"{what}: Redis unreachable at REDIS_URL={self.url}; start Redis or fix REDIS_URL "
                                f"({type(exc).__name__}: {exc})")

    def check(self) -> None:
        """Readiness: Redis answers PING (raises ``QueueUnavailable`` naming REDIS_URL)."""
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise self._unavailable(exc, "Trainings cannot be queued") from None

    # --- replicas --------------------------------------------------------
    def request(self, project: str) -> None:
        """Restart the project's debounce and make sure one job is pending for it."""
        try:
            debounce_ms = int(self.settings.train_debounce_seconds * 1000)
            if debounce_ms > 0:
                self.redis.set(self._key(project, "debounce"), b"1", px=debounce_ms)
            pending = self._pending(project)
            gone = self._gone(pending) if pending is not None else None
            if pending is not None and gone is None:
                return
            self._enqueue(project, replacing=pending, why=gone)
        except redis.RedisError as exc:
            raise self._unavailable(exc, "Training not queued") from None

    def _pending(self, project: str) -> str | None:
        raw = self.redis.get(self._key(project, "pending"))
        return raw.decode() if isinstance(raw, bytes) and raw else None  # the client returns bytes

    def _gone(self, job_id: str) -> str | None:
        """Why the job will not serve the requests any more (ended, lost, its worker killed), or None.

        Running and renewing its lease, or started so recently that its work horse may not have
        taken the lease yet, or queued (or between two of RQ's states): it will.
        """
        if self.redis.exists(lease_key(self.settings.redis_queue, job_id)):
            return None
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return "not in Redis"
        status = job.get_status()
        if status in ENDED:
            return f"{status.value}"
        if status == JobStatus.STARTED and job.started_at is not None:
            age = (datetime.now(UTC) - job.started_at.replace(tzinfo=UTC)).total_seconds()  # RQ keeps UTC
            if age > LEASE_SECONDS:
                return f"started {age:.0f} s ago and not renewing its lease"
        return None

    def _enqueue(self, project: str, replacing: str | None, why: str | None) -> None:
        job_id = f"train-{project}-{uuid.uuid4().hex[:12]}"
        if not self.redis.eval(_REPLACE, 1, self._key(project, "pending"), job_id, replacing or ""):
            return  # another replica enqueued a job for these requests first
        if replacing:
            log.warning("project %s: pending training job %s is gone (%s); queued %s instead",
                        project, replacing, why, job_id)
        # job_timeout -1: a training takes as long as it takes; a killed worker is seen through the lease
        self.queue.enqueue(JOB_FUNCTION, project, job_id=job_id, job_timeout=-1, result_ttl=24 * 3600,
                           failure_ttl=7 * 24 * 3600, description=f"train project {project}")

    # --- workers ---------------------------------------------------------
    def run(self, project: str, trainer: Trainer, job_id: str) -> dict:
        """Train ``project`` for job ``job_id``: after the debounce, under the store's training lock."""
        self._wait_for_quiet(project)  # before the lock: do not hold it through the debounce
        return trainer.train(project, when_locked=lambda: self._claim(project, job_id))

    def _wait_for_quiet(self, project: str) -> None:
        """Return once no request came for TRAIN_DEBOUNCE_SECONDS (the debounce key expired).

        Redis gone meanwhile: train now rather than drop a training that was asked for.
        """
        key = self._key(project, "debounce")
        try:
            while (left_ms := self.redis.pttl(key)) > 0:
                time.sleep(min(left_ms / 1000, 1.0))
        except redis.RedisError as exc:
            log.warning("project %s: Redis unreachable while waiting out the debounce (%s); training now",
                        project, exc)

    def _claim(self, project: str, job_id: str) -> None:
        """Holding the lock: wait out a debounce restarted meanwhile, then take the pending requests.

        From here on a new request enqueues a new job (one more training after this one). If Redis
        is away, ``pending`` stays; the next request finds its job finished and enqueues anew.
        """
        self._wait_for_quiet(project)
        try:
            self.redis.eval(_CLAIM, 1, self._key(project, "pending"), job_id)
        except redis.RedisError as exc:
            log.warning("project %s: cannot clear the pending job in Redis (%s); training anyway", project, exc)


def lease_key(queue_name: str, job_id: str) -> str:
    return f"{queue_name}:training:alive:{job_id}"
