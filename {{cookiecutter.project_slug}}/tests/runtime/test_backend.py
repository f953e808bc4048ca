"""``Backend`` as the one door to a project's data, and the composition root's settings and errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading

import pytest

from lsbackend.app import build_backend
from lsbackend.label_config import ConfigError
from lsbackend.service import Backend, ModelClassError, load_model_class
from lsbackend.settings import Settings, SettingsError

import examples
from conftest import MODEL_CLASS, ROOT, training_events

PROJECT = "7"


class RecordedRequests:
    """A ``TrainingQueue`` that only notes which projects asked for a training."""

    def __init__(self) -> None:
        self.projects: list[str] = []

    def request(self, project: str) -> None:
        self.projects.append(project)


def event_parts(i: int) -> tuple[dict, dict]:
    event = training_events()[i]
    return event["annotation"], event["task"]


def test_recorded_annotations_train_every_n(settings):
    queue = RecordedRequests()
    backend = Backend(MODEL_CLASS, dataclasses.replace(settings, train_every_n=2), queue=queue)
    answers = [backend.record_annotation(PROJECT, *event_parts(i)) for i in range(5)]
    assert [a["status"] for a in answers] == ["recorded"] * 5
    assert queue.projects == [PROJECT, PROJECT]  # after the 2nd and the 4th
    assert backend.status(PROJECT)["recorded_annotations"] == 5


def test_without_train_every_n_recording_never_requests_training(backend):
    backend.queue = queue = RecordedRequests()
    for i in range(4):
        backend.record_annotation(PROJECT, *event_parts(i))
    assert queue.projects == []


def test_a_cancelled_or_emptied_annotation_is_forgotten(backend):
    annotation, task = event_parts(0)
    backend.record_annotation(PROJECT, annotation, task)
    assert backend.store(PROJECT).count_annotations() == 1
    answer = backend.record_annotation(PROJECT, {**annotation, "result": []}, task)
    assert answer == {"status": "ignored", "reason": "cancelled or empty annotation"}
    assert backend.store(PROJECT).count_annotations() == 0


def test_delete_annotations_names_only_the_recorded_ones(backend):
    kept = [backend.record_annotation(PROJECT, *event_parts(i))["annotation"] for i in range(3)]
    assert backend.delete_annotations(PROJECT, [kept[0], 999_999, "x", kept[2]]) == [kept[0], kept[2]]
    assert [a["id"] for a in backend.store(PROJECT).annotations()] == [kept[1]]


def test_predict_without_a_config_uses_the_one_label_studio_sent(tmp_path, config):
    backend = Backend(MODEL_CLASS, Settings(model_dir=tmp_path, label_config_path=tmp_path / "none.xml"))
    tasks = [{"id": 1, "data": data} for data, _ in examples.holdout()[:1]]
    with pytest.raises(ConfigError, match="No labeling config for this project"):
        backend.predict(PROJECT, None, tasks)
    backend.save_project_config(PROJECT, config)
    assert backend.label_config(PROJECT) == config
    assert len(backend.predict(PROJECT, None, tasks)) == 1


def test_the_model_object_gets_the_backends_settings(backend, config):
    assert backend.model(PROJECT, config).settings is backend.settings


def test_the_store_reports_a_training_while_its_lock_is_held(backend):
    store = backend.store(PROJECT)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.training_lock():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(30)
        assert store.training_running()
    finally:
        release.set()
        thread.join(30)
    assert not store.training_running()


def test_a_running_status_without_a_lock_holder_reads_interrupted(backend):
    backend.store(PROJECT).save_status({"state": "running", "started_at": 1.0})
    status = backend.status(PROJECT)
    assert status["state"] == "interrupted" and "previous model keeps serving" in status["error"]


# --- settings and the composition root -----------------------------------------------------------
@pytest.mark.parametrize("name, value, phrase", [
    ("WORKERS", "0", "WORKERS=0 must be at least 1"),
    ("THREADS", "many", "THREADS='many' is not a whole number"),
    ("TIMEOUT", "2.5", "TIMEOUT='2.5' is not a whole number"),
    ("TRAINING_NICE", "25", "TRAINING_NICE=25 must be between 0 and 19"),
    ("MODEL_STORE", "ftp://bucket/x", "MODEL_STORE.*e.g. MODEL_STORE=s3://"),
    ("MODEL_STORE", "s3://Bad_Bucket/x", "MODEL_STORE.*is not an S3 bucket name"),
    ("MODEL_STORE", "s3://bucket/a/../b", "MODEL_STORE.*'\\.\\.' part"),
    ("S3_ENDPOINT_URL", "minio:9000", "S3_ENDPOINT_URL.*e.g. S3_ENDPOINT_URL=http://minio:9000"),
])
def test_a_bad_setting_is_a_settings_error_naming_it_and_the_fix(monkeypatch, name, value, phrase):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=phrase):
        Settings.from_env()


def test_server_settings_come_from_the_environment(monkeypatch):
    for name, value in {"WORKERS": "3", "THREADS": "2", "TIMEOUT": "30", "ACCESS_LOG": "yes",
                        "MODEL_CLASS": "model:Other"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.workers, settings.threads, settings.timeout) == (3, 2, 30)
    assert settings.access_log and settings.model_class == "model:Other"


@pytest.mark.parametrize("spec, phrase", [
    ("no_such_module", "no module 'no_such_module'"),
    ("model:NoSuchClass", "no LabelStudioMLBase subclass named 'NoSuchClass'"),
    ("json", "must define exactly one LabelStudioMLBase subclass, found 0"),
])
def test_a_model_class_that_cannot_be_used_is_named(spec, phrase):
    with pytest.raises(ModelClassError, match=phrase):
        load_model_class(spec)


def test_build_backend_uses_the_model_class_setting(tmp_path):
    backend = build_backend(Settings(model_dir=tmp_path, model_class=f"model:{MODEL_CLASS.__name__}"))
    assert backend.model_class is MODEL_CLASS


@pytest.mark.parametrize("command, env, phrase", [
    (["start"], {"WORKERS": "none"}, "error: WORKERS='none' is not a whole number"),
    (["serve"], {"MODEL_CLASS": "no_such_module"}, "error: MODEL_CLASS='no_such_module': no module"),
    (["predict", "-"], {"MODEL_CLASS": "model:Missing"}, "error: MODEL_CLASS='model:Missing': model has no"),
])
@pytest.mark.slow
def test_entry_points_turn_startup_errors_into_a_message_and_an_exit(tmp_path, command, env, phrase):
    env = {**os.environ, "MODEL_DIR": str(tmp_path), **env}
    proc = subprocess.run([sys.executable, "-m", "lsbackend", *command], cwd=ROOT, env=env, input="[]",
                          capture_output=True, text=True, timeout=300)  # bounded; imports are slow on a busy box
    assert proc.returncode == 1
    assert proc.stderr.startswith(phrase) and "Traceback" not in proc.stderr
