"""Logging set-up: plain text lines, or one JSON object a line (``LOG_FORMAT=json``) with the request id.

Every request gets an id: the ``X-Request-ID`` the caller sent (a proxy or
load balancer usually sets one), or a new one. It is echoed in the response
and added to every log record made while the request is answered, so the lines
of one request can be found together.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

#: The id of the request this thread is answering, if any.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
#: What an incoming X-Request-ID may be, so a log line cannot be forged or flooded through it.
VALID_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def incoming_or_new(value: str | None) -> str:
    """The caller's request id when it is a sane token, else a fresh one."""
    if value and VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record as ``request_id`` (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str) -> None:
    """Configure the root logger once for this process (text or JSON to stderr)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def gunicorn_logconfig(log_format: str, access_log: bool) -> dict | None:
    """gunicorn's own log lines (start-up, workers, access log) in the same format, for ``logconfig_dict``."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "lsbackend.logs.JSONFormatter"}},
        "handlers": {"error_console": handler, "console": {**handler, "stream": "ext://sys.stdout"}},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            # a logconfig_dict turns gunicorn's access log on: its level keeps ACCESS_LOG in charge
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING", "handlers": ["console"],
                                "propagate": False},
        },
    }
