"""gunicorn settings, from the same environment variables as the rest of the backend.

Threads serve predictions while a training job runs in a background thread of
the same worker. The timeout is finite so a stuck worker gets replaced.
"""

import gc
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '9090')}"
workers = int(os.environ.get("WORKERS", "1"))
threads = int(os.environ.get("THREADS", "8"))
worker_class = "gthread"
timeout = int(os.environ.get("TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# No control socket: it lives in the user's home, which two backends (or a read-only container) share badly.
control_socket_disable = True


def on_starting(server):
    """Check MODEL_DIR once in the master: a worker failing on it would be restarted forever."""
    from pathlib import Path

    from lsbackend.storage import StorageError, check_writable

    try:
        check_writable(Path(os.environ.get("MODEL_DIR", "data/models")))
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
