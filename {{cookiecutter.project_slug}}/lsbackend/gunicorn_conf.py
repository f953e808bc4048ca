"""gunicorn settings, read from ``Settings`` like the rest of the backend.

Threads serve predictions; trainings run outside the serving worker (see
training.py). The timeout is finite so a stuck worker gets replaced.
"""

import gc
import os
import shutil
import tempfile

from lsbackend.logs import gunicorn_logconfig
from lsbackend.settings import Settings, SettingsError

# Workers write their metrics to files here and /metrics merges them (prometheus_client's multiprocess
# mode). Set before any worker imports prometheus_client; a directory of one's own unless given.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lsbackend-metrics-")

try:
    settings = Settings.from_env()
except SettingsError as exc:  # an entry point: the domain error becomes an exit with its message
    raise SystemExit(f"error: {exc}") from None

bind = f"{settings.host}:{settings.port}"
workers = settings.workers
threads = settings.threads
worker_class = "gthread"
timeout = settings.timeout
graceful_timeout = 30
keepalive = 5
accesslog = "-" if settings.access_log else None
# the response's X-Request-ID ends the line, to find a request's log lines from its access line
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
errorlog = "-"
loglevel = settings.log_level.lower()
logconfig_dict = gunicorn_logconfig(settings.log_format, settings.access_log) or {}
# No control socket: it lives in the user's home, which two backends (or a read-only container) share badly.
control_socket_disable = True


def on_starting(server):
    """Check the model store once in the master: a worker failing on it would be restarted forever."""
    from lsbackend.app import open_store
    from lsbackend.errors import StorageError

    try:
        open_store(settings)
    except StorageError as exc:
        raise SystemExit(f"error: {exc}") from None
    from lsbackend.metrics import clean_multiprocess_dir

    clean_multiprocess_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server):
    """Remove the metrics directory made for this run (a given one is only emptied at the next start)."""
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    """A worker is gone: its in-flight gauge must not count any more (its counters still do)."""
    from lsbackend.metrics import mark_process_dead

    mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def post_worker_init(worker):
    """Move everything imported so far (Flask, scikit-learn, ...) out of the garbage collector's view.

    The ~100k objects of the imported libraries never die, yet every full
    collection walks them; triggered by the allocations of a large batch, that
    doubled predict_proba's time. Frozen objects are still freed by reference
    counting; only cycle detection skips them.
    """
    gc.collect()
    gc.freeze()
