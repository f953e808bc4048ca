"""Training runs in a child process: the serving process only waits, and a dying child loses nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import replace

import pytest

from lsbackend.server import create_app
from lsbackend.service import Backend

from conftest import MODEL_CLASS, SHAPE, captured, holdout_request, training_events, wait_for_training
from controlled_model import ControlledModel, PretrainedStart, control_dir, fit_pids, started_from

pytestmark = pytest.mark.slow  # training child processes and gunicorn

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]
START = captured(f"webhook_start_training_{SHAPE}")


@pytest.fixture
def backend(settings) -> Backend:
    return Backend(ControlledModel, settings)


@pytest.fixture
def control(settings):
    return control_dir(settings.model_dir)


def record_examples(client) -> None:
    for event in training_events():
        assert client.post("/webhook", json=event).status_code == 200


def served_versions(client) -> set[str]:
    results = client.post("/predict", json=holdout_request()).get_json()["results"]
    return {r["model_version"] for r in results}


def wait_until(condition, what: str, timeout: float = 300.0) -> None:
    """Wait for ``condition`` (bounded generously: a training child imports the model's libraries first)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_training_runs_in_a_child_process_and_the_server_serves_its_model(client, backend, settings):
    record_examples(client)
    assert client.post("/webhook", json=START).status_code == 201
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded", status
    pids = fit_pids(settings.model_dir)
    assert len(pids) == 1 and pids[0] != os.getpid(), pids  # fit ran, and not in the serving process
    assert served_versions(client) == {status["model_version"]}


def test_the_first_training_after_start_fine_tunes_from_the_model_uri_model(settings, tmp_path):
    """The child built a whole Backend, whose MODEL_URI loader had just begun: fit started from nothing."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    backend = Backend(PretrainedStart, replace(settings, model_uri=str(weights)))
    client = create_app(backend).test_client()
    record_examples(client)
    assert client.post("/webhook", json=START).status_code == 201  # while this process still loads MODEL_URI
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded", status
    pretrained = "pretrained-" + hashlib.sha256(b"weights").hexdigest()[:12]
    assert started_from(settings.model_dir) == [f"{pretrained} weights"]
    assert fit_pids(settings.model_dir)[0] != os.getpid()  # in the child, which loaded MODEL_URI itself


def test_training_runs_below_the_serving_priority(client, settings, control):
    record_examples(client)
    assert client.post("/webhook", json=START).status_code == 201
    assert wait_for_training(client, PROJECT)["state"] == "succeeded"
    expected = min(19, os.nice(0) + settings.training_nice)  # niceness adds up and stops at 19
    threads = [int(n) for n in (control / "nice").read_text().split()]
    assert len(threads) > 1, "the model's libraries start thread pools; the test must see them"
    assert settings.training_nice > 0 and set(threads) == {expected}, threads


def test_a_killed_training_child_leaves_the_last_good_model_serving_and_says_so(client, backend, settings, control):
    record_examples(client)
    client.post("/webhook", json=START)
    good = wait_for_training(client, PROJECT)["model_version"]
    assert served_versions(client) == {good}

    (control / "hold").touch()
    client.post("/webhook", json=START)
    wait_until(lambda: len(fit_pids(settings.model_dir)) == 2, "the second fit to start")
    os.kill(fit_pids(settings.model_dir)[1], signal.SIGKILL)
    wait_until(backend.queue.idle, "the server to notice the training process died")
    status = client.get(f"/training/{PROJECT}").get_json()
    assert status["state"] == "interrupted", status
    assert "killed by SIGKILL" in status["error"] and "previous model keeps serving" in status["error"], status
    assert status["model_version"] == good
    assert served_versions(client) == {good}

    (control / "hold").unlink()  # and the next training works
    client.post("/webhook", json=START)
    again = wait_for_training(client, PROJECT)
    assert again["state"] == "succeeded" and again["model_version"].split("-")[0] == "v2", again


def test_requests_during_a_training_run_it_exactly_once_more(client, backend, settings, control):
    record_examples(client)
    (control / "hold").touch()
    client.post("/webhook", json=START)
    wait_until(lambda: len(fit_pids(settings.model_dir)) == 1, "the first fit to start")
    for _ in range(3):
        assert client.post("/webhook", json=START).status_code == 201
    (control / "hold").unlink()
    wait_until(backend.queue.idle, "the queue to finish")
    assert len(fit_pids(settings.model_dir)) == 2  # the three requests made one more training, not three
    status = client.get(f"/training/{PROJECT}").get_json()
    assert status["state"] == "succeeded" and status["model_version"].split("-")[0] == "v2", status


def test_a_failed_fit_keeps_the_last_good_model_and_the_next_training_succeeds(client, backend, control):
    record_examples(client)
    client.post("/webhook", json=START)
    good = wait_for_training(client, PROJECT)["model_version"]
    (control / "fail").write_text("disk on fire")
    client.post("/webhook", json=START)
    failed = wait_for_training(client, PROJECT)
    assert failed["state"] == "failed" and "RuntimeError: disk on fire" in failed["error"], failed
    assert failed["model_version"] == good and served_versions(client) == {good}
    (control / "fail").unlink()
    client.post("/webhook", json=START)
    assert wait_for_training(client, PROJECT)["state"] == "succeeded"
    wait_until(backend.queue.idle, "the queue to go idle")  # the waiting thread ends once the job is done


def test_a_model_class_a_child_process_cannot_import_fails_with_the_reason(settings):
    class DefinedInAFunction(MODEL_CLASS):
        pass

    client = create_app(Backend(DefinedInAFunction, settings)).test_client()
    record_examples(client)
    client.post("/webhook", json=START)
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "failed", status  # not "queued" forever
    assert status["error"].startswith("could not start a training process:"), status
    assert "DefinedInAFunction" in status["error"] and status["model_version"] == "untrained"
