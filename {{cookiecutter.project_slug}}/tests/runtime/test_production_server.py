"""The production server (gunicorn, as the Docker image runs it) end to end over real HTTP.

Starts ``python -m lsbackend start`` in a subprocess, trains through the
webhook, and restarts it on the same MODEL_DIR to check the trained model
survives.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fake_label_studio import LEGACY_TOKEN, FakeLabelStudio

import examples
from conftest import EXAMPLES_CONFIG, PROTOCOL, ROOT, SHAPE, captured, holdout_request, training_events
from harness import ServerProcess, free_port, wait_for_training

pytestmark = pytest.mark.slow
PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


class Server(ServerProcess):
    """``python -m lsbackend start``, as the Docker image runs it, on ``model_dir``."""

    def __init__(self, model_dir: Path, log: Path, **env: str) -> None:
        env = {**os.environ, "MODEL_DIR": str(model_dir), "TRAIN_DEBOUNCE_SECONDS": "0.3",
               "LABEL_CONFIG": str(EXAMPLES_CONFIG), **env}
        super().__init__([sys.executable, "-m", "lsbackend", "start"], log, env)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


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
        trained = wait_for_training(lambda: server.call("GET", f"/training/{PROJECT}")[2],
                                    context=server.log.read_text)
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


def test_start_listens_on_the_host_given_on_the_command_line(model_dir, tmp_path):
    """``start --host`` was parsed and ignored: gunicorn bound HOST from the environment."""
    env = {**os.environ, "MODEL_DIR": str(model_dir), "LABEL_CONFIG": str(EXAMPLES_CONFIG)}
    server = ServerProcess([sys.executable, "-m", "lsbackend", "start", "--host", "127.0.0.2"],
                           tmp_path / "server.log", env, startup_timeout=30, address="127.0.0.2")  # HOST=127.0.0.1
    try:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    finally:
        server.stop()


def test_each_captured_interactive_request_gets_its_suggestion_through_the_production_server(model_dir, tmp_path):
    """Label Studio's interactive calls (a span, a smart rectangle or keypoint, a TextArea prompt; shapes in
    tests/runtime/protocol/README.md) after a training, media fetched from Label Studio with its key; each answer is
    the variant's suggestion (examples.check_interactive), compared with the batch call for the same task."""
    names = sorted(p.stem for p in PROTOCOL.glob(f"predict_interactive_*_{SHAPE}.json"))
    assert names, f"no interactive capture of {SHAPE}"
    label_studio = FakeLabelStudio()
    label_studio.uploads.update(examples.uploads())
    server = Server(model_dir, tmp_path / "server.log", LABEL_STUDIO_URL=label_studio.url,
                    LABEL_STUDIO_API_KEY=LEGACY_TOKEN)
    try:
        for event in training_events():
            assert server.call("POST", "/webhook", event)[0] == 200
        assert server.call("POST", "/webhook", captured(f"webhook_start_training_{SHAPE}"))[0] == 201
        trained = wait_for_training(lambda: server.call("GET", f"/training/{PROJECT}")[2],
                                    context=server.log.read_text)
        assert trained["state"] == "succeeded", trained
        for name in names:
            interactive = captured(name)
            interactive["project"] = PROJECT  # the project trained here
            status, reason, body = server.call("POST", "/predict", interactive)
            assert status == 200, (name, reason, body)
            batch = {**interactive, "params": {**interactive["params"], "context": None}}
            [expected] = server.call("POST", "/predict", batch)[2]["results"]
            [suggestion] = body["results"]
            assert suggestion["model_version"] == trained["model_version"], suggestion
            examples.check_interactive(name, suggestion, expected)
        metrics = server.call_text("GET", "/metrics")
        assert f'lsbackend_interactive_duration_seconds_count{{kind="region"}} {len(names)}.0' in metrics
    finally:
        server.stop()
        label_studio.close()
