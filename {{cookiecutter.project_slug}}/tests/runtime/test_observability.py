"""Metrics (prometheus_client), readiness, request ids and JSON logs, in process."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from lsbackend import logs
from lsbackend.media import MediaError
from lsbackend.server import create_app

from conftest import SHAPE, captured, training_events, wait_for_training
from harness import wait_until

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus' text format, or fail naming it."""
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(found.group(1))


def test_requests_are_timed_per_endpoint_and_none_stays_in_flight(client):
    client.get("/health")
    client.post("/predict", json=captured(f"predict_{SHAPE}"))
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "lsbackend_request_duration_seconds_count", 'endpoint="predict"') == 1
    assert sample(text, "lsbackend_request_duration_seconds_count", 'endpoint="health"') == 1
    assert sample(text, "lsbackend_requests_total", 'endpoint="predict",status="200"') == 1
    assert sample(text, "lsbackend_tasks_predicted_total") == len(captured(f"predict_{SHAPE}")["tasks"])
    assert sample(text, "lsbackend_requests_in_flight") == 1  # only the /metrics request itself


def test_tasks_a_model_fails_are_counted_from_the_failure_not_the_version(client, backend, monkeypatch):
    def one_fails(self, tasks, context=None, **kwargs):
        return [self.failed_task(tasks[0], MediaError("http://x/a.png: HTTP 404"))] + \
            [{**self.prediction([]), "model_version": "v+media-error"} for _ in tasks[1:]]  # a user's own suffix

    monkeypatch.setattr(backend.model_class, "predict", one_fails)
    body = captured(f"predict_{SHAPE}")
    body = {**body, "tasks": [body["tasks"][0], {**body["tasks"][0], "id": 99}]}
    assert client.post("/predict", json=body).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "lsbackend_tasks_predicted_total") == 2
    assert sample(text, "lsbackend_failed_tasks_total") == 1


@pytest.mark.slow


def test_training_outcome_duration_last_success_and_model_version_are_reported(client, backend):
    client.post("/setup", json=captured(f"setup_{SHAPE}"))
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "lsbackend_model_version_info", f'project="{PROJECT}",version="untrained"') == 1
    for event in training_events():
        client.post("/webhook", json=event)
    client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    version = wait_for_training(client, PROJECT)["model_version"]
    wait_until(backend.queue.idle, "the server to count the training")  # counted when its child process ends
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "lsbackend_trainings_total", 'outcome="succeeded"') == 1
    assert sample(text, "lsbackend_training_duration_seconds_count", 'outcome="succeeded"') == 1
    assert sample(text, "lsbackend_last_successful_training_timestamp_seconds", f'project="{PROJECT}"') > 1.7e9
    assert sample(text, "lsbackend_model_version_info", f'project="{PROJECT}",version="{version}"') == 1
    assert sample(text, "lsbackend_model_version_info", f'project="{PROJECT}",version="untrained"') == 0


def test_a_failed_training_is_counted_as_failed(client, backend, monkeypatch):
    def broken_fit(self, annotations, **kwargs):
        raise RuntimeError("the model's fit broke")

    monkeypatch.setattr(backend.model_class, "fit", broken_fit)
    for event in training_events():
        client.post("/webhook", json=event)
    assert backend.train(PROJECT)["state"] == "failed"
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "lsbackend_trainings_total", 'outcome="failed"') == 1


# --- readiness --------------------------------------------------------------
def test_ready_reports_the_model_store(client):
    reply = client.get("/ready")
    assert reply.status_code == 200
    assert reply.get_json() == {"status": "READY", "checks": {"model_store": "ok"}}


def test_not_ready_when_model_dir_is_unusable_and_the_reason_says_why(client, settings):
    settings.model_dir.rename(settings.model_dir.with_name("moved"))
    settings.model_dir.write_text("a file where the directory was")
    reply = client.get("/ready")
    assert reply.status_code == 503
    assert reply.status.startswith("503 Not ready: model_store: MODEL_DIR")
    assert reply.get_json()["checks"]["model_store"].startswith("MODEL_DIR")
    assert client.get("/health").status_code == 200, "liveness must not depend on the store"


def test_added_checks_are_reported_by_name(client, backend):
    def redis() -> None:
        raise ConnectionError("cannot reach Redis at redis://127.0.0.1:1: connection refused")

    backend.readiness_checks["redis"] = redis
    reply = client.get("/ready")
    assert reply.status_code == 503
    assert "redis: cannot reach Redis at redis://127.0.0.1:1" in reply.status
    assert reply.get_json()["checks"] == {"model_store": "ok", "redis": reply.get_json()["checks"]["redis"]}


# --- request ids and JSON logs ----------------------------------------------
def test_an_incoming_request_id_is_kept_and_echoed(client):
    assert client.get("/health", headers={"X-Request-ID": "lb-7f3a.42"}).headers["X-Request-ID"] == "lb-7f3a.42"


@pytest.mark.parametrize("given", [None, "", "two words", "x" * 200, "evil\u2028line"])
def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_one(client, given):
    headers = {"X-Request-ID": given} if given is not None else {}
    first = client.get("/health", headers=headers).headers["X-Request-ID"]
    second = client.get("/health", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_json_logs_carry_the_request_id_of_the_request_that_logged(backend):
    app = create_app(backend)

    @app.get("/log-something")
    def log_something():
        logging.getLogger("lsbackend.test").warning("inside the request")
        return {"ok": True}

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.JSONFormatter())
    logger = logging.getLogger("lsbackend.test")
    logger.addHandler(handler)
    try:
        app.test_client().get("/log-something", headers={"X-Request-ID": "req-123"})
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["request_id"] == "req-123" and inside["message"] == "inside the request"
    assert inside["level"] == "WARNING" and inside["logger"] == "lsbackend.test"
    assert "request_id" not in outside


def test_log_format_accepts_text_or_json_only(monkeypatch):
    from lsbackend.settings import Settings, SettingsError

    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert Settings.from_env().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT='xml' is not one of text, json"):
        Settings.from_env()
