"""The one composition root: settings -> model class -> backend -> Flask app, or -> trainer.

``wsgi.py`` (gunicorn) and every CLI command build through here, so the
server and the command line always run the same backend; a training child
and an RQ work horse build only a ``Trainer`` here (``build_trainer``). The builders raise
the domain errors in ``STARTUP_ERRORS``; entry points turn them into exits
(``exit_on_startup_error``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from flask import Flask

from . import logs
from .base import LabelStudioMLBase
from .errors import StorageError
from .metrics import Metrics
from .service import Backend, ModelClassError, load_model_class
from .settings import Settings, SettingsError
from .storage import LocalModelStore, ModelStore
from .trainer import Trainer
from .training import ThreadTrainingQueue, TrainingQueue

#: What can stop the backend from starting; each message names the setting and the fix.
STARTUP_ERRORS = (SettingsError, StorageError, ModelClassError)
T = TypeVar("T")


def configure_logging(settings: Settings) -> None:
    """Text lines, or JSON with the request id (``LOG_FORMAT``); see ``logs``."""
    logs.configure(settings.log_level, settings.log_format)


def model_class(settings: Settings) -> type[LabelStudioMLBase]:
    """The class ``MODEL_CLASS`` names, importable from the folder the backend runs in (next to model.py)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_model_class(settings.model_class)


def open_store(settings: Settings) -> ModelStore:
    """The store the settings ask for: S3-compatible object storage when ``MODEL_STORE`` is set, else the
    local/shared filesystem under MODEL_DIR. The S3 module (and boto3) is imported only then.

    Raises ``StorageError`` naming the problem and the fix when it cannot be used.
    """
    if settings.model_store:
        from .storage_s3 import S3ModelStore

        return S3ModelStore(settings)
    return LocalModelStore(settings.model_dir, settings.keep_versions)


def open_queue(settings: Settings, train: Callable[[str], object]) -> TrainingQueue:
    """The queue the settings ask for: Redis + RQ with ``REDIS_URL``, else a thread of this process
    that runs ``train(project)``. redis and rq are imported only when asked for."""
    if settings.redis_url:
        try:
            from .redis_queue import RedisTrainingQueue
        except ModuleNotFoundError as exc:
            raise SettingsError(f"REDIS_URL is set but {exc.name!r} is not installed; pip install -r "
                                "requirements-redis.txt (or build the image with EXTRAS=redis)") from None
        return RedisTrainingQueue(settings)
    return ThreadTrainingQueue(train, settings.train_debounce_seconds)


def readiness_checks(settings: Settings, stores: ModelStore, queue: TrainingQueue) -> dict[str, Callable[[], object]]:
    """What /ready checks: the store, and with REDIS_URL whether trainings can be queued."""
    checks: dict[str, Callable[[], object]] = {"model_store": stores.check}
    check = getattr(queue, "check", None)
    if settings.redis_url and check is not None:
        checks["redis"] = check
    return checks


def build_backend(settings: Settings | None = None, model: type[LabelStudioMLBase] | None = None) -> Backend:
    """The backend for these settings (default: the environment's) and model class (default: MODEL_CLASS)."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    model = model or model_class(settings)
    stores = open_store(settings)
    metrics = Metrics(settings.metrics_dir)
    trainer = Trainer(model, settings, stores, metrics)
    queue = open_queue(settings, trainer.train_in_child)
    return Backend(model, settings, queue, stores, metrics, trainer, readiness_checks(settings, stores, queue))


def build_trainer(settings: Settings | None = None, model: type[LabelStudioMLBase] | None = None,
                  metrics: Metrics | None = None) -> Trainer:
    """A trainer for these settings (default: the environment's), without serving: no queue, no loader
    thread; it loads MODEL_URI only when a training needs it, and waits for it."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    return Trainer(model or model_class(settings), settings, open_store(settings),
                   metrics or Metrics(settings.metrics_dir))


def build_app(settings: Settings | None = None) -> Flask:
    """The Flask app around ``build_backend(settings)``."""
    from .server import create_app

    return create_app(build_backend(settings))


def exit_on_startup_error(build: Callable[[], T]) -> T:
    """Run a builder; a startup error becomes ``SystemExit`` with its message (for entry points only)."""
    try:
        return build()
    except STARTUP_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None
