"""gunicorn settings, read from ``Settings`` like the rest of the backend.

Threads serve predictions; trainings run outside the serving worker (see
training.py). The timeout is finite so a stuck worker gets replaced.
"""

import gc

from lsbackend.settings import Settings, SettingsError

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
errorlog = "-"
loglevel = settings.log_level.lower()
# No control socket: it lives in the user's home, which two backends (or a read-only container) share badly.
control_socket_disable = True


def on_starting(server):
    """Check the model store once in the master: a worker failing on it would be restarted forever."""
    from lsbackend.storage import StorageError, open_store

    try:
        open_store(settings)
    except StorageError as exc:
        raise SystemExit(f"error: {exc}") from None


def post_worker_init(worker):
    """Move everything imported so far (Flask, scikit-learn, ...) out of the garbage collector's view.

    The ~100k objects of the imported libraries never die, yet every full
    collection walks them; triggered by the allocations of a large batch, that
    doubled predict_proba's time. Frozen objects are still freed by reference
    counting; only cycle detection skips them.
    """
    gc.collect()
    gc.freeze()
