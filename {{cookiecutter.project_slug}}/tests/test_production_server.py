"""The production server (gunicorn, as the Docker image runs it) end to end over real HTTP.

Starts ``python -m lsbackend start`` in a subprocess, trains through the
webhook, and restarts it on the same MODEL_DIR to check the trained model
survives.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES_CONFIG, ROOT, SHAPE, captured, holdout_request, training_events

pytestmark = pytest.mark.slow
PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running ``python -m lsbackend start`` and a tiny JSON client for it."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "MODEL_DIR": str(model_dir),
               "TRAIN_DEBOUNCE_SECONDS": "0.3", "LABEL_CONFIG": str(EXAMPLES_CONFIG)}
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "lsbackend", "start"], cwd=ROOT, env=env,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 120.0) -> None:  # bounded; worker imports are slow on a busy box
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer /health in {timeout}s:\n{self.log.read_text()}")

    def call(self, method: str, path: str, body: object = None) -> tuple[int, str, object]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.reason, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def wait_trained(server: Server, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server.call("GET", f"/training/{PROJECT}")[2]
        if status["state"] in ("succeeded", "failed", "skipped"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"training did not finish: {status}\n{server.log.read_text()}")


def test_serves_trains_in_background_and_keeps_the_model_across_restarts(model_dir, tmp_path):
    server = Server(model_dir, tmp_path / "server.log")
    try:
        assert server.call("POST", "/setup", captured(f"setup_{SHAPE}"))[2] == {"model_version": "untrained"}
        predict = captured(f"predict_{SHAPE}")
        results = server.call("POST", "/predict", predict)[2]["results"]
        assert len(results) == len(predict["tasks"]) and {r["model_version"] for r in results} == {"untrained"}
        for event in training_events():
            assert server.call("POST", "/webhook", event)[0] == 200
        status, _, body = server.call("POST", "/webhook", captured(f"webhook_start_training_{SHAPE}"))
        assert status == 201 and body["status"] == "queued"
        trained = wait_trained(server)
        assert trained["state"] == "succeeded", trained
        version = trained["model_version"]
        results = server.call("POST", "/predict", holdout_request())[2]["results"]
        assert {r["model_version"] for r in results} == {version}
    finally:
        server.stop()
    restarted = Server(model_dir, tmp_path / "server2.log")
    try:
        assert restarted.call("POST", "/setup", captured(f"setup_{SHAPE}"))[2] == {"model_version": version}
    finally:
        restarted.stop()


def test_a_config_that_does_not_fit_reaches_label_studio_as_the_reason_phrase(model_dir, tmp_path):
    """Label Studio shows only the reason phrase; check it survives gunicorn on the wire."""
    server = Server(model_dir, tmp_path / "server.log")
    try:
        body = captured(f"setup_{SHAPE}")
        body["schema"] = '<View><Audio name="a" value="$a"/><Choices name="c" toName="a">' \
                         '<Choice value="x"/><Choice value="y"/></Choices></View>'
        status, reason, _ = server.call("POST", "/setup", body)
        assert status == 422 and reason.startswith("Labeling config does not fit: needs ")
    finally:
        server.stop()


def test_start_up_fails_at_once_when_model_dir_is_unusable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "MODEL_DIR": str(blocker / "models"), "PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "lsbackend", "serve"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"MODEL_DIR {str(blocker / 'models')!r} is not writable" in proc.stderr
    assert "Set MODEL_DIR to a writable directory" in proc.stderr
