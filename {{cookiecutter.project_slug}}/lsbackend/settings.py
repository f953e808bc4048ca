"""Every setting the backend reads, from environment variables, in one place.

Only entry points (``app.py``'s builders, ``cli.py``, ``gunicorn_conf.py``)
call ``Settings.from_env()``; everything else receives the ``Settings`` object.
A bad value raises ``SettingsError``; the entry point turns it into an exit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value the backend cannot use; the message names it and the fix."""


_TRUE = ("1", "true", "yes", "on")


def _number(name: str, default: float, cast: type = int) -> float:
    """An env var as a number, or ``SettingsError`` naming the variable and a valid value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = "whole number" if cast is int else "number"
        raise SettingsError(f"{name}={raw!r} is not a {kind}; set it to one, e.g. {name}={default}") from None


def _positive(name: str, default: int) -> int:
    value = _number(name, default)
    if value < 1:
        raise SettingsError(f"{name}={value} must be at least 1, e.g. {name}={default}")
    return value


def _nice(name: str, default: int) -> int:
    """A scheduling niceness: 0 (same priority as serving) to 19 (only idle CPU)."""
    value = _number(name, default)
    if not 0 <= value <= 19:
        raise SettingsError(f"{name}={value} must be between 0 and 19, e.g. {name}={default}")
    return value


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    """An env var that must be one of ``allowed`` (the first is the default), or ``SettingsError`` naming them."""
    raw = os.environ.get(name, "").strip().lower() or allowed[0]
    if raw not in allowed:
        choices = ", ".join(allowed)
        raise SettingsError(f"{name}={raw!r} is not one of {choices}; set it to one, e.g. {name}={allowed[0]}")
    return raw


def _redis_url(raw: str) -> str:
    """``REDIS_URL``: empty (train in this container) or a URL redis-py takes."""
    url = raw.strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        # the value is not echoed: a URL may carry a password
        raise SettingsError("REDIS_URL is not a Redis URL; set it like REDIS_URL=redis://redis:6379/0 "
                            "(rediss:// for TLS, unix:///path/to/socket), or leave it empty to train in this container")
    return url


BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_STORE_EXAMPLE = "e.g. MODEL_STORE=s3://my-bucket/ls-models, or leave it empty to keep models in MODEL_DIR"


def s3_location(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/"); ``SettingsError`` naming the fix otherwise."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme.lower() != "s3" or not sep:
        raise SettingsError(f"MODEL_STORE={uri!r} is not an s3:// URI (the only object store supported); "
                            f"{_STORE_EXAMPLE}")
    if not BUCKET.fullmatch(bucket):
        raise SettingsError(f"MODEL_STORE={uri!r}: {bucket!r} is not an S3 bucket name (3 to 63 characters: "
                            f"lowercase letters, digits, dots, hyphens); {_STORE_EXAMPLE}")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise SettingsError(f"MODEL_STORE={uri!r}: the prefix {prefix!r} has an empty, '.' or '..' part; "
                            f"{_STORE_EXAMPLE}")
    return bucket, f"{prefix}/" if prefix else ""


def _model_store(name: str) -> str:
    raw = os.environ.get(name, "").strip()
    if raw:
        s3_location(raw)  # fail at start-up, naming the fix
    return raw


def _endpoint_url(name: str) -> str:
    raw = os.environ.get(name, "").strip().rstrip("/")
    if raw and not re.fullmatch(r"https?://[^/\s]+(/.*)?", raw):
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL; set it to the S3-compatible server, "
                            f"e.g. {name}=http://minio:9000, or leave it empty for AWS S3")
    return raw


@dataclass(frozen=True)
class Settings:
    """Runtime settings; see the README's table of environment variables."""

    host: str = "0.0.0.0"
    port: int = 9090
    model_dir: Path = Path("data/models")
    label_config_path: Path = Path("label_config.xml")
    label_studio_url: str = ""
    label_studio_api_key: str = ""
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    train_debounce_seconds: float = 2.0
    train_every_n: int = 0
    training_nice: int = 10
    max_request_bytes: int = 50 * 1024 * 1024
    max_json_depth: int = 100
    keep_versions: int = 3
    log_level: str = "INFO"
    local_files_root: str = ""
    media_timeout_seconds: float = 10.0
    media_max_bytes: int = 20 * 1024 * 1024
    media_cache_bytes: int = 64 * 1024 * 1024
    media_fetch_threads: int = 16
    media_allowed_hosts: tuple[str, ...] = ()
    media_max_pixels: int = 40_000_000
    max_text_chars: int = 100_000
    log_format: str = "text"
    metrics_dir: str = ""
    model_class: str = "model"
    workers: int = 1
    threads: int = 8
    timeout: int = 120
    access_log: bool = False
    model_uri: str = ""
    model_sha256: str = ""
    model_max_bytes: int = 2048 * 1024 * 1024
    model_fetch_timeout_seconds: float = 60.0
    redis_url: str = ""
    redis_queue: str = "lsbackend"


    model_store: str = ""  # "" (MODEL_DIR) or s3://bucket/prefix, checked by ``s3_location``
    s3_endpoint_url: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            host=env("HOST", cls.host),
            port=_number("PORT", cls.port),
            model_dir=Path(env("MODEL_DIR", str(cls.model_dir))),
            label_config_path=Path(env("LABEL_CONFIG", str(cls.label_config_path))),
            # LABEL_STUDIO_HOST: the name upstream's examples also use; LABEL_STUDIO_URL wins when both are set
            label_studio_url=(env("LABEL_STUDIO_URL", "").strip() or env("LABEL_STUDIO_HOST", "").strip()).rstrip("/"),
            label_studio_api_key=env("LABEL_STUDIO_API_KEY", ""),
            basic_auth_user=env("BASIC_AUTH_USER", ""),
            basic_auth_pass=env("BASIC_AUTH_PASS", ""),
            train_debounce_seconds=_number("TRAIN_DEBOUNCE_SECONDS", cls.train_debounce_seconds, float),
            train_every_n=_number("TRAIN_EVERY_N", cls.train_every_n),
            training_nice=_nice("TRAINING_NICE", cls.training_nice),
            max_request_bytes=_number("MAX_REQUEST_MB", 50) * 1024 * 1024,
            # orjson refuses more than 1024 levels whatever this says
            max_json_depth=min(1000, max(1, _number("MAX_JSON_DEPTH", cls.max_json_depth))),
            keep_versions=max(1, _number("KEEP_VERSIONS", cls.keep_versions)),
            log_level=env("LOG_LEVEL", cls.log_level).upper(),
            local_files_root=env("LOCAL_FILES_ROOT", ""),
            media_timeout_seconds=_number("MEDIA_TIMEOUT_SECONDS", cls.media_timeout_seconds, float),
            media_max_bytes=_number("MEDIA_MAX_MB", 20) * 1024 * 1024,
            media_cache_bytes=_number("MEDIA_CACHE_MB", 64) * 1024 * 1024,
            media_fetch_threads=max(1, _number("MEDIA_FETCH_THREADS", cls.media_fetch_threads)),
            media_allowed_hosts=tuple(h.strip() for h in env("MEDIA_ALLOWED_HOSTS", "").split(",") if h.strip()),
            media_max_pixels=int(_number("MEDIA_MAX_MEGAPIXELS", 40, float) * 1_000_000),
            max_text_chars=_positive("MAX_TEXT_CHARS", cls.max_text_chars),
            log_format=_choice("LOG_FORMAT", ("text", "json")),
            metrics_dir=env("PROMETHEUS_MULTIPROC_DIR", ""),  # set by gunicorn_conf.py for the workers
            model_class=env("MODEL_CLASS", "").strip() or cls.model_class,
            workers=_positive("WORKERS", cls.workers),
            threads=_positive("THREADS", cls.threads),
            timeout=_number("TIMEOUT", cls.timeout),
            access_log=env("ACCESS_LOG", "").strip().lower() in _TRUE,
            model_uri=env("MODEL_URI", "").strip(),
            model_sha256=env("MODEL_SHA256", "").strip(),
            model_max_bytes=_number("MODEL_MAX_MB", 2048) * 1024 * 1024,
            model_fetch_timeout_seconds=_number("MODEL_FETCH_TIMEOUT_SECONDS", 60.0, float),
            redis_url=_redis_url(env("REDIS_URL", "")),
            redis_queue=env("REDIS_QUEUE", "").strip() or cls.redis_queue,


            model_store=_model_store("MODEL_STORE"),
            s3_endpoint_url=_endpoint_url("S3_ENDPOINT_URL"),
        )

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """``MODEL_STORE`` as (bucket, prefix ending in "/" or empty), or None for the local MODEL_DIR."""
        return s3_location(self.model_store) if self.model_store else None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user or self.basic_auth_pass)
