"""The HTTP server that speaks Label Studio's ML backend protocol: a Flask Blueprint and its app factory.

The views are plain module-level functions of the ``protocol`` Blueprint; each finds the app's
``Backend`` in ``current_app.extensions``. Errors are answered by their class (``Unavailable``:
503, ``ConfigError``: 422, ...), so a new error of a known kind needs no handler of its own.

Label Studio shows its user only the HTTP reason phrase of an error, so every
error answer carries a short, specific reason phrase; details go in the JSON
body and the log. ``/health`` and ``/`` never touch a model.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from pathlib import Path

import orjson
from flask import Blueprint, Flask, Response, abort, current_app, request
from flask.json.provider import DefaultJSONProvider

from . import logs
from .base import TaskDataError
from .errors import QueueUnavailable, StorageWriteError, Unavailable
from .ids import MAX_ID, annotation_id, project_key
from .interaction import InteractionError
from .label_config import ConfigError
from .predict_body import read_predict_body
from .service import Backend, PredictionError

log = logging.getLogger(__name__)
OPEN_PATHS = {"/health", "/", "/openapi.json", "/ready"}
#: The API as an OpenAPI 3 document, served at /openapi.json; tests check the server against it.
OPENAPI = Path(__file__).with_name("openapi.json").read_bytes()
RECORDED = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
DELETED = {"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"}


class BadRequest(Exception):
    """A request we refuse, with its status and a one-line reason."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


def answer(body: object, status: int = 200, reason: str | None = None) -> Response:
    """A compact JSON response; a custom reason phrase when given (ASCII, one line)."""
    payload = _encode(body)
    resp = Response(payload, mimetype="application/json")
    if reason:
        phrase = re.sub(r"[^\x20-\x7e]", "?", reason)[:200]
        resp.status = f"{status} {phrase}"
    else:
        resp.status_code = status
    return resp


def _encode(body: object) -> bytes:
    """JSON bytes; orjson because it encodes a 1000-task answer ~10x faster than json."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a type orjson does not know, or a lone surrogate: the standard library decides
        pass
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: escape it instead of failing
        return json.dumps(body, separators=(",", ":")).encode("ascii")


class JSONTooDeep(ValueError):
    """A JSON body nested deeper than the parsers (or MAX_JSON_DEPTH) allow."""


class _JSONProvider(DefaultJSONProvider):
    """Request bodies parsed by orjson, 2x faster on a 1000-task body (its errors are ValueErrors too)."""

    def loads(self, s, **kwargs):
        if not kwargs:
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError as exc:  # e.g. lone surrogates, which json accepts: same answers as before
                if "recursion limit" in str(exc):
                    raise JSONTooDeep(str(exc)) from None
        try:
            return super().loads(s, **kwargs)
        except RecursionError:  # json recurses per level: deep nesting must not be a 500
            raise JSONTooDeep("nesting exceeds the parser's recursion limit") from None


def _nested_deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current if isinstance(current, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _json_body(max_depth: int) -> dict:
    if not request.is_json:
        raise BadRequest(415, "Content-Type must be application/json")
    raw = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # a chunked body: werkzeug stops reading at the limit and hands over the truncated start
        abort(413)
    too_deep = BadRequest(
        400, f"Request JSON is nested more than {max_depth} levels deep",
        "Label Studio's requests nest a few levels; raise MAX_JSON_DEPTH if yours really need more.",
    )
    try:
        body = current_app.json.loads(raw)
    except JSONTooDeep:
        raise too_deep from None
    except ValueError:
        raise BadRequest(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "Request body must be a JSON object")
    if _nested_deeper_than(body, max_depth):
        raise too_deep
    return body


def _project(value: object) -> str:
    try:
        return project_key(value)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


def _tasks(body: dict) -> list[dict]:
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise BadRequest(400, "'tasks' must be a non-empty list of tasks")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BadRequest(400, f"Task {i} has no 'data' object", "Each task needs a data dict.")
    return tasks


def _extra_params(value: object) -> dict:
    """The Connect dialog's extra params as a dict; null (none given) clears them."""
    refused = BadRequest(422, 'Extra params must be a JSON object, e.g. {"score_threshold": 0.5}')
    if isinstance(value, str) and value.strip():  # the dialog's text, if Label Studio passed it unparsed
        try:
            value = json.loads(value)
        except ValueError:
            raise refused from None
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise refused
    return value


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type (for messages: users write JSON, not Python)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), type(value).__name__)


def _params(value: object) -> dict:
    """``/predict``'s ``params``: an object or null, as the OpenAPI document says; anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(422, f"'params' must be a JSON object or null, not {_json_type(value)}; "
                         'send e.g. {"context": null}, or leave it out',
                         "Label Studio sends params as an object holding context, login and password.")
    return value


#: The protocol's views, hooks and error answers; ``create_app`` registers it on an app holding one ``Backend``.
protocol = Blueprint("protocol", __name__)


def create_app(backend: Backend) -> Flask:
    """Build the Flask app around one ``Backend``."""
    app = Flask(__name__)
    app.json = _JSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = backend.settings.max_request_bytes
    app.extensions["lsbackend"] = backend
    app.register_blueprint(protocol)
    return app


def _backend() -> Backend:
    """The ``Backend`` of the app serving this request."""
    return current_app.extensions["lsbackend"]


# --- every request: request id, auth, metrics -------------------------------------------------------
@protocol.before_app_request
def _start() -> None:
    request.environ["lsb.start"] = time.perf_counter()
    request.environ["lsb.request_id"] = logs.incoming_or_new(request.headers.get("X-Request-ID"))
    request.environ["lsb.log_token"] = logs.request_id.set(request.environ["lsb.request_id"])
    _backend().metrics.in_flight.inc()


@protocol.teardown_app_request
def _finish(_exc: BaseException | None) -> None:
    _backend().metrics.in_flight.dec()
    token = request.environ.pop("lsb.log_token", None)
    if token is not None:
        logs.request_id.reset(token)


@protocol.before_app_request
def _check_auth() -> Response | None:
    settings = _backend().settings
    if not settings.auth_enabled or request.path in OPEN_PATHS:
        return None
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    given = b""
    if scheme.lower() == "basic":  # RFC 7617: the scheme name is case-insensitive
        try:
            given = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
    expected = f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()
    if hmac.compare_digest(given, expected):
        return None
    resp = answer({"error": "authentication required"}, 401, "Basic auth credentials required")
    resp.headers["WWW-Authenticate"] = 'Basic realm="ml-backend"'
    return resp


@protocol.after_app_request
def _count(resp: Response) -> Response:
    started = request.environ.get("lsb.start")
    elapsed = time.perf_counter() - started if started else 0.0
    endpoint = (request.endpoint or "unknown").removeprefix(f"{protocol.name}.")
    _backend().metrics.request_done(endpoint, resp.status_code, elapsed)
    resp.headers["X-Request-ID"] = request.environ.get("lsb.request_id", "")
    return resp


# --- errors, by their base class -------------------------------------------------------------------
@protocol.app_errorhandler(BadRequest)
def _bad(exc: BadRequest) -> Response:
    return answer({"error": exc.reason, "detail": exc.detail}, exc.status, exc.reason)


@protocol.app_errorhandler(ConfigError)
def _config(exc: ConfigError) -> Response:
    return answer({"error": exc.reason, "detail": exc.detail, "example": exc.example}, 422, exc.reason)


@protocol.app_errorhandler(TaskDataError)
def _task_data(exc: TaskDataError) -> Response:
    detail = "The labeling config reads this field; import tasks that carry it or change the config."
    return answer({"error": exc.reason, "detail": detail}, 422, exc.reason)


@protocol.app_errorhandler(InteractionError)
def _interaction(exc: InteractionError) -> Response:
    detail = "params.context must be what Label Studio's interactive pre-annotation sends: {\"result\": [regions]}."
    return answer({"error": str(exc), "detail": detail}, 422, str(exc)[:200])


@protocol.app_errorhandler(StorageWriteError)
def _storage(exc: StorageWriteError) -> Response:
    # 507 Insufficient Storage for a full disk; 503 when MODEL_DIR cannot be written at all
    status = 507 if exc.kind == "full" else 503
    detail = exc.fix or ("Free space on the disk that holds MODEL_DIR; the backend carries on by itself once "
                         "there is room." if exc.kind == "full" else
                         "Make MODEL_DIR writable for the backend's user.")
    log.error("%s %s: %s", request.method, request.path, exc)
    return answer({"error": str(exc), "detail": detail}, status, str(exc))


@protocol.app_errorhandler(Unavailable)
def _unavailable(exc: Unavailable) -> Response:
    """A part that cannot answer now (the queue, MODEL_URI still loading or failed): 503, and when to retry."""
    if isinstance(exc, QueueUnavailable):
        log.error("%s %s: %s", request.method, request.path, exc)
    resp = answer({"error": str(exc)}, 503, str(exc))
    if exc.retry_after is not None:
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@protocol.app_errorhandler(413)
def _too_large(_exc: Exception) -> Response:
    limit = _backend().settings.max_request_bytes // (1024 * 1024)
    reason = f"Request larger than {limit} MB; raise MAX_REQUEST_MB or send fewer tasks"
    return answer({"error": reason}, 413, reason)


@protocol.app_errorhandler(404)
def _not_found(_exc: Exception) -> Response:
    return answer({"error": f"no endpoint {request.path}"}, 404, "Not Found")


@protocol.app_errorhandler(405)
def _not_allowed(_exc: Exception) -> Response:
    return answer({"error": f"{request.method} not allowed on {request.path}"}, 405, "Method Not Allowed")


@protocol.app_errorhandler(Exception)
def _crash(exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.path)
    reason = str(exc) if isinstance(exc, PredictionError) else f"Internal error: {type(exc).__name__}"
    return answer({"error": reason}, 500, reason)


# --- the protocol's endpoints ----------------------------------------------------------------------
@protocol.get("/")
@protocol.get("/health")
def health() -> Response:
    backend = _backend()
    body = {"status": "UP", "model_class": backend.model_class.__name__}
    if backend.pretrained is not None:  # never waits: loading happens in the background
        body["pretrained"] = backend.pretrained.state
    return answer(body)


@protocol.get("/openapi.json")
def openapi() -> Response:
    return Response(OPENAPI, mimetype="application/json")


@protocol.post("/setup")
def setup() -> Response:
    backend = _backend()
    body = _json_body(backend.settings.max_json_depth)
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise BadRequest(400, "'schema' (the labeling config) is missing")
    if "project" not in body:
        raise BadRequest(400, "'project' is missing")
    extra = _extra_params(body["extra_params"]) if "extra_params" in body else None  # absent: keep them
    project = _project(body["project"])
    version = backend.setup(project, schema, extra)
    backend.metrics.serving(project, version)
    backend.authorize_webhook(project, request.host)
    return answer({"model_version": version})


@protocol.get("/versions")
def versions() -> Response:
    """Label Studio's model-version list. It names no project, so the latest /setup's project answers."""
    backend = _backend()
    asked = request.args.get("project")
    project = backend.versions_project(_project(asked) if asked else None)
    if project is None:
        return answer({"versions": [], "current": None, "project": None})
    return answer({**backend.versions(project), "project": project})


@protocol.post("/predict")
def predict() -> Response:
    backend = _backend()
    max_depth = backend.settings.max_json_depth
    read = None
    if request.is_json and request.content_length is not None:  # chunked bodies: the general path checks them
        read = read_predict_body(request.get_data(), max_depth)
    if read is None:  # anything the typed reading does not take: the general path and its errors
        body = _json_body(max_depth)
        tasks = _tasks(body)
    else:
        body, tasks = read
    given = body.get("project")
    project = _project(given if given not in (None, "") else tasks[0].get("project"))  # project 0 is a project
    config = body.get("label_config")
    if config is not None and not isinstance(config, str):
        raise BadRequest(400, "'label_config' must be a string")
    params = _params(body.get("params"))
    results = backend.predict(project, config, tasks, params.get("context"))
    backend.metrics.predicted(results)
    problem = backend.model_problem(project)
    if problem:  # Label Studio shows the version; the log, /training and this phrase say why it is older
        return answer({"results": results, "warning": problem}, 200, f"OK; {problem}")
    return answer({"results": results})


@protocol.post("/webhook")
def webhook() -> Response:
    backend = _backend()
    body = _json_body(backend.settings.max_json_depth)
    action = body.get("action")
    if not isinstance(action, str):
        raise BadRequest(400, "'action' is missing")
    project_obj = body.get("project")
    if action in RECORDED | DELETED | {"START_TRAINING"} and project_obj is None:
        raise BadRequest(400, f"{action} without 'project'")
    project = _project(project_obj)
    if isinstance(project_obj, dict) and isinstance(project_obj.get("label_config"), str):
        backend.save_project_config(project, project_obj["label_config"])
    if action in RECORDED:
        return answer(_record(backend, project, body))
    if action in DELETED:
        return answer(_delete(backend, project, body))
    if action == "START_TRAINING":
        backend.request_training(project)
        return answer({"status": "queued", "project": project}, 201)
    return answer({"status": "ignored", "action": action})


@protocol.post("/train")
def train_legacy() -> Response:
    """Older Label Studio versions call /train instead of sending START_TRAINING."""
    backend = _backend()
    body = _json_body(backend.settings.max_json_depth)
    project = _project(body.get("project"))
    config = body.get("label_config")
    if config is not None and not isinstance(config, str):
        raise BadRequest(400, "'label_config' must be a string")
    if config:
        backend.setup(project, config)
    backend.request_training(project)
    return answer({"status": "queued", "project": project}, 201)


@protocol.get("/training/<project>")
def training_status(project: str) -> Response:
    return answer(_backend().status(_project(project)))


@protocol.get("/metrics")
def metrics_endpoint() -> Response:
    metrics = _backend().metrics
    return Response(metrics.render(), content_type=metrics.content_type)


@protocol.get("/ready")
def ready() -> Response:
    """Readiness, unlike /health: can this process serve? Each check is named with its problem."""
    problems = _backend().readiness()
    checks = {name: problem or "ok" for name, problem in problems.items()}
    failing = [f"{name}: {problem}" for name, problem in problems.items() if problem]
    if failing:
        reason = "Not ready: " + "; ".join(failing)
        return answer({"status": "NOT READY", "checks": checks}, 503, reason)
    return answer({"status": "READY", "checks": checks})


def _record(backend: Backend, project: str, body: dict) -> dict:
    annotation, task = body.get("annotation"), body.get("task")
    if not isinstance(annotation, dict) or "id" not in annotation:
        raise BadRequest(400, f"{body['action']} without 'annotation.id'")
    if annotation_id(annotation["id"]) is None:
        # the id names the annotation's file: anything but a plain number could escape the directory
        raise BadRequest(400, f"'annotation.id' must be an integer from 0 to {MAX_ID}")
    result = annotation.get("result")
    if result is not None and not (isinstance(result, list) and all(isinstance(r, dict) for r in result)):
        raise BadRequest(400, "'annotation.result' must be a list of result objects")
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise BadRequest(400, f"{body['action']} without 'task.data'")
    return backend.record_annotation(project, annotation, task)


def _delete(backend: Backend, project: str, body: dict) -> dict:
    items = body.get("annotations")
    if items is None and isinstance(body.get("annotation"), dict):
        items = [body["annotation"]]
    if not isinstance(items, list):
        raise BadRequest(400, f"{body['action']} without 'annotations'")
    ids = [a.get("id") for a in items if isinstance(a, dict)]
    return {"status": "deleted", "annotations": backend.delete_annotations(project, ids)}
