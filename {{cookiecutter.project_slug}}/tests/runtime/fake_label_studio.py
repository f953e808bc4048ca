"""A local HTTP server standing in for Label Studio's API in tests (loopback only)."""

from __future__ import annotations

import json
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import serve_in_thread, stop_serving

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.YWNjZXNz"
VALID_AUTH = (f"Token {LEGACY_TOKEN}", f"Bearer {ACCESS}")


class BadQuery(ValueError):
    """A ``query`` this stand-in does not understand: the test fails loudly rather than guessing."""


def filter_tasks(tasks: list[dict], predictions: list[dict], query: dict) -> list[dict]:
    """The Data Manager filters the bulk push sends, with Label Studio 1.23's meaning.

    ``predictions_model_versions`` ``not_contains`` keeps tasks none of whose
    predictions has a model version *containing* one of the values (Label
    Studio uses a substring match); ``id`` ``greater`` keeps ids above the
    value. Only ``and``, and ordering by ``tasks:id``, are understood.
    """
    filters = query.get("filters") or {"conjunction": "and", "items": []}
    if filters.get("conjunction") != "and" or query.get("ordering", ["tasks:id"]) != ["tasks:id"]:
        raise BadQuery(f"unsupported conjunction or ordering: {query}")
    chosen = sorted(tasks, key=lambda t: t["id"])
    for item in filters["items"]:
        kind, value = (item["filter"], item["operator"], item["type"]), item["value"]
        if kind == ("filter:tasks:predictions_model_versions", "not_contains", "List") and isinstance(value, list):
            versions = {}
            for p in predictions:
                versions.setdefault(p["task"], []).append(p["model_version"])
            chosen = [t for t in chosen if not any(v in have for v in value for have in versions.get(t["id"], []))]
        elif kind == ("filter:tasks:id", "greater", "Number"):
            chosen = [t for t in chosen if t["id"] > value]
        else:
            raise BadQuery(f"unsupported filter: {item}")
    return chosen


class FakeLabelStudio:
    """Serves, shaped as Label Studio 1.23 answers them: ``/api/projects/<id>`` and its ``/export``,
    ``/api/tasks`` (paged, with the Data Manager ``query`` filters of ``filter_tasks`` and
    ``include``), ``/api/projects/<id>/import/predictions``, ``/api/token/refresh/``, ``/api/ml`` and
    ``/api/webhooks/`` (list and PATCH). Records auth headers, task queries and patches.

    ``fail_import_at``: the n-th prediction import (1-based) answers 500, as a lost connection would.
    ``drop_tasks``: predictions for these tasks are not created, as Label Studio drops one that does
    not fit the labeling config while still answering 201 with the smaller count.
    ``uploads``: files served at their ``/data/upload/<project>/<name>`` path, to a valid key only.
    """

    def __init__(self, export: list[dict] | None = None, tasks: list[dict] | None = None, project: str = "7",
                 label_config: str = "") -> None:
        self.export = export or []
        self.tasks = tasks or []
        self.project, self.label_config = project, label_config
        self.predictions: list[dict] = []
        self.imports = 0
        self.fail_import_at = 0
        self.drop_tasks: set[int] = set()
        self.task_queries: list[dict] = []
        self.auth_seen: list[str] = []
        self.ml_backends: list[dict] = []
        self.webhooks: list[dict] = []
        self.patches: list[tuple[str, dict]] = []
        self.uploads: dict[str, bytes] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                fake.auth_seen.append(auth)
                if auth not in VALID_AUTH:
                    self.reply(401, {"detail": "Authentication credentials were not provided."})
                    return False
                return True

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/token/refresh/":
                    if body.get("refresh") == PAT:
                        return self.reply(200, {"access": ACCESS})
                    return self.reply(401, {"detail": "bad refresh token"})
                if self.path == f"/api/projects/{fake.project}/import/predictions" and self.authorized():
                    return self.reply(*fake.import_predictions(body))
                self.reply(404, {"detail": "not found"})

            def do_GET(self) -> None:  # noqa: N802
                if not self.authorized():
                    return
                url = urllib.parse.urlsplit(self.path)
                if url.path == f"/api/projects/{fake.project}":
                    return self.reply(200, {"id": int(fake.project), "label_config": fake.label_config})
                if url.path == "/api/tasks":
                    return self.reply(*fake.list_tasks(dict(urllib.parse.parse_qsl(url.query))))
                if re.fullmatch(r"/api/projects/\d+/export", url.path):
                    return self.reply(200, fake.export)
                if self.path.startswith("/api/ml?project="):
                    return self.reply(200, list(fake.ml_backends))
                if self.path.startswith("/api/webhooks/?project="):
                    return self.reply(200, list(fake.webhooks))
                if url.path in fake.uploads:
                    return self.send_file(fake.uploads[url.path])
                self.reply(404, {"detail": "not found"})

            def send_file(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PATCH(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.authorized():
                    return
                hook = next((h for h in fake.webhooks if self.path == f"/api/webhooks/{h['id']}/"), None)
                if hook is None:
                    return self.reply(404, {"detail": "not found"})
                fake.patches.append((self.path, body))
                hook.update(body)
                self.reply(200, hook)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = serve_in_thread(self.server)

    def list_tasks(self, params: dict[str, str]) -> tuple[int, dict]:
        if params.get("project") != self.project:
            return 404, {"detail": "Not found."}
        query = json.loads(params.get("query") or "{}")
        self.task_queries.append({**params, "query": query})
        try:
            chosen = filter_tasks(self.tasks, self.predictions, query)
        except BadQuery as exc:
            return 400, {"detail": str(exc)}
        page, size = int(params.get("page", 1)), int(params.get("page_size", 100))
        shown = []
        for task in chosen[(page - 1) * size : page * size]:
            full = {**task, "predictions": [p for p in self.predictions if p["task"] == task["id"]]}
            if "include" in params:
                full = {k: v for k, v in full.items() if k in params["include"].split(",")}
            elif params.get("fields") != "all":
                full.pop("predictions")
            shown.append(full)
        return 200, {"tasks": shown, "total": len(chosen), "total_annotations": 0,
                     "total_predictions": len(self.predictions)}

    def import_predictions(self, body: list[dict]) -> tuple[int, dict]:
        self.imports += 1
        if self.imports == self.fail_import_at:
            return 500, {"detail": "server error"}
        known = {t["id"] for t in self.tasks}
        if any(p.get("task") not in known for p in body):
            return 400, {"detail": "contains invalid \"task\" field"}
        created = [p for p in body if p["task"] not in self.drop_tasks]
        self.predictions.extend(created)
        return 201, {"created": len(created)}

    def close(self) -> None:
        stop_serving(self.server)
