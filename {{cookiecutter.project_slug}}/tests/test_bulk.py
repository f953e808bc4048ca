"""Bulk pre-annotation (``python -m lsbackend predict --push``) against a stand-in for Label Studio's API."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_label_studio import LEGACY_TOKEN

from lsbackend.bulk import push_predictions
from lsbackend.label_studio_api import LabelStudioClient, LabelStudioError

import examples
from conftest import EXAMPLES_CONFIG, ROOT
from test_faults import ENV, annotations

PROJECT = "7"


class TasksServer:
    """Label Studio's task list (paged, with predictions), project and prediction import; loopback only.

    ``fail_import_at``: the n-th import call (1-based) answers 500, as a lost connection would.
    """

    def __init__(self, tasks: list[dict], config: str, fail_import_at: int = 0) -> None:
        self.tasks, self.config, self.fail_import_at = tasks, config, fail_import_at
        self.imports = 0
        self.predictions: list[dict] = []
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

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Authorization") != f"Token {LEGACY_TOKEN}":
                    return self.reply(401, {"detail": "no"})
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == f"/api/projects/{PROJECT}":
                    return self.reply(200, {"id": int(PROJECT), "label_config": fake.config})
                if url.path == "/api/tasks" and query.get("project") == PROJECT and query.get("fields") == "all":
                    page, size = int(query["page"]), int(query["page_size"])
                    chosen = fake.tasks[(page - 1) * size : page * size]
                    with_predictions = [{**t, "predictions": [p for p in fake.predictions if p["task"] == t["id"]]}
                                        for t in chosen]
                    return self.reply(200, {"tasks": with_predictions, "total": len(fake.tasks)})
                self.reply(404, {"detail": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != f"/api/projects/{PROJECT}/import/predictions":
                    return self.reply(404, {"detail": "not found"})
                fake.imports += 1
                if fake.imports == fake.fail_import_at:
                    return self.reply(500, {"detail": "server error"})
                fake.predictions.extend(body)
                self.reply(201, {"created": len(body)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def project_tasks(n: int) -> list[tuple[dict, str]]:
    """``n`` tasks cycling through the variant's held-out examples, with their true labels."""
    held = examples.holdout()
    return [({"id": 100 + i, "data": held[i % len(held)][0]}, held[i % len(held)][1]) for i in range(n)]


@pytest.fixture
def label_studio():
    pairs = project_tasks(11)
    server = TasksServer([task for task, _ in pairs], EXAMPLES_CONFIG.read_text(encoding="utf-8"))
    server.truth = {task["id"]: label for task, label in pairs}
    yield server
    server.close()


def test_push_predicts_every_task_once_and_stores_it_with_the_served_version(backend, label_studio):
    version = backend.train(PROJECT, annotations())["model_version"]
    client = LabelStudioClient(label_studio.url, LEGACY_TOKEN)
    seen = []
    report = push_predictions(backend, client, PROJECT, batch_size=2, page_size=3,
                              progress=lambda done, total: seen.append((done, total)))
    assert (report.version, report.pushed, report.skipped, report.failed) == (version, 11, 0, [])
    stored = {p["task"]: p for p in label_studio.predictions}
    assert sorted(stored) == sorted(label_studio.truth) and len(label_studio.predictions) == 11
    assert {p["model_version"] for p in stored.values()} == {version}
    assert {t: examples.predicted_label(p) for t, p in stored.items()} == label_studio.truth
    assert seen[-1] == (11, 11) and [d for d, _ in seen] == sorted(d for d, _ in seen)

    again = push_predictions(backend, client, PROJECT, batch_size=2, page_size=3)
    assert (again.pushed, again.skipped) == (0, 11) and len(label_studio.predictions) == 11


def test_a_stopped_push_resumes_without_predicting_a_task_twice(backend, label_studio):
    backend.train(PROJECT, annotations())
    label_studio.fail_import_at = 3  # the third batch is lost
    client = LabelStudioClient(label_studio.url, LEGACY_TOKEN)
    with pytest.raises(LabelStudioError, match="answered 500"):
        push_predictions(backend, client, PROJECT, batch_size=2, page_size=4)
    assert len(label_studio.predictions) == 4
    resumed = push_predictions(backend, client, PROJECT, batch_size=2, page_size=4)
    assert (resumed.pushed, resumed.skipped) == (7, 4)
    assert sorted(p["task"] for p in label_studio.predictions) == sorted(label_studio.truth)


def test_a_new_version_predicts_the_tasks_again(backend, label_studio):
    backend.train(PROJECT, annotations())
    client = LabelStudioClient(label_studio.url, LEGACY_TOKEN)
    push_predictions(backend, client, PROJECT)
    newer = backend.train(PROJECT, annotations())["model_version"]
    report = push_predictions(backend, client, PROJECT)
    assert (report.version, report.pushed, report.skipped) == (newer, 11, 0)


def cli(model_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsbackend", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**ENV, "MODEL_DIR": str(model_dir), **env}, timeout=300)


def test_the_cli_pushes_with_a_progress_bar_and_reports_throughput(tmp_path, label_studio):
    export = [{"id": a["task"]["id"], "data": a["task"]["data"], "annotations": [a]} for a in annotations()]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert cli(tmp_path / "models", "train", str(tmp_path / "export.json"), "--project", PROJECT).returncode == 0
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": LEGACY_TOKEN}
    done = cli(tmp_path / "models", "predict", "--push", "--project", PROJECT, "--batch-size", "4", **env)
    assert done.returncode == 0, done.stderr
    assert "11 predictions stored, 0 tasks already predicted, 0 failed" in done.stdout and "tasks/s" in done.stdout
    assert "11/11" in done.stderr  # tqdm's bar
    assert len(label_studio.predictions) == 11


def test_push_without_label_studio_settings_names_them(tmp_path):
    env = {k: v for k, v in ENV.items() if not k.startswith("LABEL_STUDIO")}
    proc = subprocess.run([sys.executable, "-m", "lsbackend", "predict", "--push", "--project", PROJECT], cwd=ROOT,
                          capture_output=True, text=True, env={**env, "MODEL_DIR": str(tmp_path)}, timeout=120)
    assert proc.returncode == 2 and "--push needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY" in proc.stderr
