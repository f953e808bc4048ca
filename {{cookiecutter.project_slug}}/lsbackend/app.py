"""The one composition root: settings -> model class -> backend -> Flask app.

``wsgi.py`` (gunicorn) and every CLI command build through here, so the
server and the command line always run the same backend. The builders raise
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
from .service import Backend, ModelClassError, load_model_class
from .settings import Settings, SettingsError
from .storage import StorageError

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


def build_backend(settings: Settings | None = None) -> Backend:
    """The backend for these settings (default: the environment's)."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    return Backend(model_class(settings), settings)


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
