"""Every setting the backend reads, declared once: its variable, default, parser and meaning.

Each field of ``Settings`` carries its ``Setting`` declaration, so the environment is read in one
loop (``Settings.from_env``), and the docs' settings table (``python -m lsbackend settings``) and the
tests that check the README, the compose files and the Kubernetes manifests all read the same list.
Only entry points (``app.py``'s builders, ``cli.py``, ``gunicorn_conf.py``) call ``from_env``;
everything else receives the ``Settings`` object. A bad value raises ``SettingsError``; the entry
point turns it into an exit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """An environment variable holds a value the backend cannot use; the message names it and the fix."""


class Invalid(ValueError):
    """Raised by a parser: what is wrong with the value; ``from_env`` adds the variable and an example."""

    def __init__(self, shown: object, problem: str) -> None:
        super().__init__(problem)
        self.shown, self.problem = shown, problem


_TRUE = ("1", "true", "yes", "on")
#: A parser turns a variable's (stripped, non-empty) text into the field's value, or raises Invalid.
Parser = Callable[[str, str], Any]


def text(_name: str, raw: str) -> str:
    return raw


def whole(minimum: int | None = None, maximum: int | None = None, clamp: bool = False, scale: int = 1) -> Parser:
    """A whole number within bounds (refused outside them, or clamped into them with ``clamp``), times ``scale``."""
    def parse(name: str, raw: str) -> int:
        value = _number(name, raw, int)
        if clamp:
            value = value if minimum is None else max(minimum, value)
            value = value if maximum is None else min(maximum, value)
        elif (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise Invalid(value, f"must be {bounds}")
        return value * scale
    return parse


def decimal(scale: float = 1.0, cast: type = float) -> Parser:
    """A number (``1.5``), times ``scale``, as ``cast``."""
    return lambda name, raw: cast(_number(name, raw, float) * scale)


def _number(name: str, raw: str, cast: type) -> Any:
    try:
        return cast(raw)
    except ValueError:
        raise Invalid(repr(raw), "is not a whole number" if cast is int else "is not a number") from None


def fraction(_name: str, raw: str) -> float:
    """A share from 0 up to (not including) 1 (``EVAL_HOLDOUT=0.2``)."""
    value = _number(_name, raw, float)
    if not 0 <= value < 1:
        raise Invalid(value, "must be from 0 up to (not including) 1")
    return value


def choice(*allowed: str) -> Parser:
    """One of ``allowed`` (case ignored), or ``SettingsError`` naming them."""
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise Invalid(repr(value), f"is not one of {', '.join(allowed)}")
        return value
    return parse


def flag(_name: str, raw: str) -> bool:
    return raw.lower() in _TRUE


def url(_name: str, raw: str) -> str:
    return raw.rstrip("/")


def upper(_name: str, raw: str) -> str:
    return raw.upper()


def names(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def redis_url(_name: str, raw: str) -> str:
    """``REDIS_URL``: a URL redis-py takes (empty, the default, trains in this container)."""
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        # the value is not echoed: a URL may carry a password
        raise SettingsError("REDIS_URL is not a Redis URL; set it like REDIS_URL=redis://redis:6379/0 "
                            "(rediss:// for TLS, unix:///path/to/socket), or leave it empty to train in this container")
    return raw


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


def model_store(_name: str, raw: str) -> str:
    s3_location(raw)  # fail at start-up, naming the fix
    return raw


def endpoint_url(name: str, raw: str) -> str:
    raw = raw.rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/.*)?", raw):
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL; set it to the S3-compatible server, "
                            f"e.g. {name}=http://minio:9000, or leave it empty for AWS S3")
    return raw


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, how its text becomes the value, what it means for a user."""

    env: str
    meaning: str
    parse: Parser = text
    shown_default: str | None = None  # the default as a user writes it, when the field holds it otherwise
    aliases: tuple[str, ...] = ()  # other names read when ``env`` is unset (e.g. upstream's spelling)

    def shown(self, default: Any) -> str:
        """The default as the docs show it and as an example in error messages."""
        if self.shown_default is not None:
            return self.shown_default
        return f"{default:g}" if isinstance(default, float) else str(default)

    def read(self, name: str, raw: str, default: Any) -> Any:
        """The value of ``raw``, or ``SettingsError`` naming the variable, the problem and a value that works."""
        try:
            return self.parse(name, raw)
        except Invalid as exc:
            raise SettingsError(f"{name}={exc.shown} {exc.problem}; set it to one that is, "
                                f"e.g. {name}={self.shown(default)}") from None


def setting(default: Any, env: str, meaning: str, parse: Parser = text, shown: str | None = None,
            aliases: tuple[str, ...] = ()) -> Any:
    """A ``Settings`` field read from ``env`` (or an alias); empty or unset keeps ``default``."""
    return field(default=default, metadata={"setting": Setting(env, meaning, parse, shown, aliases)})


MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Runtime settings; ``python -m lsbackend settings`` prints this list as the docs' table."""

    host: str = setting("0.0.0.0", "HOST", "address to listen on")
    port: int = setting(9090, "PORT", "port to listen on (make run, the image and the compose "
                                                 "files set the port chosen at generation)", whole(1, 65535))
    model_dir: Path = setting(Path("data/models"), "MODEL_DIR",
                              "where trained models, recorded annotations and training status live (/data/models "
                              "in the image); checked writable at start-up", lambda _n, raw: Path(raw))
    label_config_path: Path = setting(Path("label_config.xml"), "LABEL_CONFIG",
                                      "the config used when a request carries none (CLI, offline use)",
                                      lambda _n, raw: Path(raw))
    label_studio_url: str = setting("", "LABEL_STUDIO_URL", "Label Studio's URL as the backend reaches it (inside "
                                    "Docker, localhost is the container itself); LABEL_STUDIO_HOST, upstream "
                                    "backends' name for it, is read when this is unset", url,
                                    aliases=("LABEL_STUDIO_HOST",))
    label_studio_api_key: str = setting("", "LABEL_STUDIO_API_KEY",
                                        "legacy token or personal access token; with LABEL_STUDIO_URL, training "
                                        "fetches the project's labeled tasks")
    basic_auth_user: str = setting("", "BASIC_AUTH_USER", "with BASIC_AUTH_PASS, turns on basic auth")
    basic_auth_pass: str = setting("", "BASIC_AUTH_PASS", "with BASIC_AUTH_USER, turns on basic auth")
    train_debounce_seconds: float = setting(2.0, "TRAIN_DEBOUNCE_SECONDS",
                                            "wait after the last training request before training starts", decimal())
    train_every_n: int = setting(0, "TRAIN_EVERY_N", "also train after every N recorded annotations (0: off)",
                                 whole(0))
    training_nice: int = setting(10, "TRAINING_NICE",
                                 "CPU priority of the training process and all its threads, 0 (same as serving) "
                                 "to 19 (idle CPU only)", whole(0, 19))
    max_request_bytes: int = setting(50 * MB, "MAX_REQUEST_MB", "larger requests get 413 (also when sent chunked)",
                                     whole(1, scale=MB), "50")
    max_json_depth: int = setting(100, "MAX_JSON_DEPTH", "request JSON nested deeper gets 400 (at most 1000)",
                                  whole(1, 1000, clamp=True))
    keep_versions: int = setting(3, "KEEP_VERSIONS", "trained model versions kept per project",
                                 whole(1, clamp=True))
    eval_holdout: float = setting(0.2, "EVAL_HOLDOUT", "share of tasks each training holds out to score the new "
                                  "version on (0: train on everything, no scores; see docs/quality.md)", fraction)
    eval_min_annotations: int = setting(50, "EVAL_MIN_ANNOTATIONS", "hold out only from this many usable annotations "
                                        "on; smaller projects train on everything", whole(0))
    promote_rule: str = setting("not-worse", "PROMOTE_RULE", "not-worse: a new version scoring more than "
                                "PROMOTE_MARGIN below the served one is kept but not served; always: serve every "
                                "new version", choice("not-worse", "always"))
    promote_margin: float = setting(0.02, "PROMOTE_MARGIN", "how much lower (F1, 0 to 1) a new version may score on "
                                    "the held-out tasks and still be served", fraction)
    patterns_file: str = setting("", "PATTERNS_FILE", "JSONL of keyword or regex patterns per label: predictions "
                                 "before the first training (text classification and NER; see docs/quality.md)")
    patterns_merge: bool = setting(False, "PATTERNS_MERGE", "1, true or yes: after the first training, pattern "
                                   "matches still fill what the model left out", flag, "off")
    log_level: str = setting("INFO", "LOG_LEVEL", "logging level", upper)
    local_files_root: str = setting("", "LOCAL_FILES_ROOT", "folder whose files tasks may name by path or "
                                    "file:// URL (empty: no local files)")
    media_timeout_seconds: float = setting(10.0, "MEDIA_TIMEOUT_SECONDS",
                                           "total time for one media download, redirects included", decimal())
    media_max_bytes: int = setting(20 * MB, "MEDIA_MAX_MB", "largest media file accepted (downloads, data URIs, "
                                   "local files)", whole(1, scale=MB), "20")
    media_cache_bytes: int = setting(64 * MB, "MEDIA_CACHE_MB", "in-process cache of downloaded media (least "
                                     "recently used dropped first)", whole(0, scale=MB), "64")
    media_fetch_threads: int = setting(16, "MEDIA_FETCH_THREADS", "media files of one request downloaded at once",
                                       whole(1, clamp=True))
    media_allowed_hosts: tuple[str, ...] = setting((), "MEDIA_ALLOWED_HOSTS",
                                                   "comma-separated hosts, addresses or networks on a private "
                                                   "network that media downloads may reach", names, "")
    media_max_pixels: int = setting(40_000_000, "MEDIA_MAX_MEGAPIXELS", "largest image accepted in millions of "
                                    "pixels, read from the header before decoding", decimal(1_000_000, int), "40")
    max_text_chars: int = setting(100_000, "MAX_TEXT_CHARS", "longest task text the model reads", whole(1))
    log_format: str = setting("text", "LOG_FORMAT", "text, or json: one JSON object per log line",
                              choice("text", "json"))
    metrics_dir: str = setting("", "PROMETHEUS_MULTIPROC_DIR", "where gunicorn workers write their metrics for "
                               "/metrics to merge (default: a new temporary directory per start)")
    model_class: str = setting("model", "MODEL_CLASS", "module or module:Class of the model to serve")
    workers: int = setting(1, "WORKERS", "gunicorn worker processes", whole(1))
    threads: int = setting(8, "THREADS", "threads per gunicorn worker", whole(1))
    timeout: int = setting(120, "TIMEOUT", "gunicorn worker timeout in seconds", whole(0))
    access_log: bool = setting(False, "ACCESS_LOG", "1, true or yes: gunicorn logs every request", flag, "off")
    model_uri: str = setting("", "MODEL_URI", "existing weights to start from: a local path, an http(s) URL or "
                             "s3://bucket/key")
    model_sha256: str = setting("", "MODEL_SHA256", "refuse a MODEL_URI file with another SHA-256")
    model_max_bytes: int = setting(2048 * MB, "MODEL_MAX_MB", "refuse a larger MODEL_URI file",
                                   whole(1, scale=MB), "2048")
    model_fetch_timeout_seconds: float = setting(60.0, "MODEL_FETCH_TIMEOUT_SECONDS",
                                                 "network timeout while downloading MODEL_URI", decimal())
    redis_url: str = setting("", "REDIS_URL", "queue trainings on Redis for python -m lsbackend worker processes "
                             "(empty: train in this container)", redis_url)
    redis_queue: str = setting("lsbackend", "REDIS_QUEUE", "the RQ queue's name and the prefix of this backend's "
                               "Redis keys")
    model_store: str = setting("", "MODEL_STORE", "s3://bucket/prefix: keep models, annotations and status on "
                               "S3-compatible storage shared by every replica (empty: MODEL_DIR)", model_store)
    s3_endpoint_url: str = setting("", "S3_ENDPOINT_URL", "the S3-compatible server for MODEL_STORE (empty: AWS S3)",
                                   endpoint_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every declared variable from ``environ`` (the process environment by default)."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            declared: Setting = item.metadata["setting"]
            for name in (declared.env, *declared.aliases):
                raw = environ.get(name, "").strip()
                if raw:
                    values[item.name] = declared.read(name, raw, item.default)
                    break
        return cls(**values)

    @classmethod
    def declared(cls) -> list[tuple[str, Setting, Any]]:
        """(field name, declaration, default) of every setting, in declaration order."""
        return [(item.name, item.metadata["setting"], item.default) for item in fields(cls)]

    @classmethod
    def table(cls) -> str:
        """The settings as a Markdown table (variable, default, meaning): the docs print exactly this."""
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for _name, declared, default in cls.declared():
            rows.append(f"| `{declared.env}` | {declared.shown(default)} | {declared.meaning} |")
        return "\n".join(rows) + "\n"

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """``MODEL_STORE`` as (bucket, prefix ending in "/" or empty), or None for the local MODEL_DIR."""
        return s3_location(self.model_store) if self.model_store else None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user or self.basic_auth_pass)
