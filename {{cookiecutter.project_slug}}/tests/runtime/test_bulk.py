"""Bulk pre-annotation (``python -m lsbackend predict --push``) against a stand-in for Label Studio's API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fake_label_studio import LEGACY_TOKEN, FakeLabelStudio

from lsbackend.bulk import push_predictions
from lsbackend.label_studio_api import LabelStudioClient, LabelStudioError

import examples
from conftest import EXAMPLES_CONFIG, ROOT
from test_faults import ENV, annotations

PROJECT = "7"


def project_tasks(n: int) -> list[tuple[dict, str]]:
    """``n`` tasks cycling through the variant's held-out examples, with their true labels."""
    held = examples.holdout()
    return [({"id": 100 + i, "data": held[i % len(held)][0]}, held[i % len(held)][1]) for i in range(n)]


@pytest.fixture
def label_studio():
    pairs = project_tasks(11)
    fake = FakeLabelStudio(tasks=[task for task, _ in pairs], project=PROJECT,
                           label_config=EXAMPLES_CONFIG.read_text(encoding="utf-8"))
    fake.truth = {task["id"]: label for task, label in pairs}
    yield fake
    fake.close()


@pytest.fixture
def ls_client(label_studio):
    return LabelStudioClient(label_studio.url, LEGACY_TOKEN)


def test_push_predicts_every_task_once_and_stores_it_with_the_served_version(backend, label_studio, ls_client):
    version = backend.train(PROJECT, annotations())["model_version"]
    seen = []
    report = push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=3, import_size=4,
                              progress=lambda done, total: seen.append((done, total)))
    assert (report.version, report.pushed, report.skipped, report.failed) == (version, 11, 0, [])
    stored = {p["task"]: p for p in label_studio.predictions}
    assert sorted(stored) == sorted(label_studio.truth) and len(label_studio.predictions) == 11
    assert {p["model_version"] for p in stored.values()} == {version}
    assert {t: examples.predicted_label(p) for t, p in stored.items()} == label_studio.truth
    assert seen[0] == (0, 11) and seen[-1] == (11, 11) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert label_studio.imports == 3  # 11 predictions, 4 per import call, not one call per batch of 2
    assert min(report.list_seconds, report.import_seconds, report.predict_seconds) > 0  # where the time went
    # only id and data are asked for (no annotations or predictions serialized), never a page number past 1
    assert all(q["include"] == "id,data" and q["page"] == "1" for q in label_studio.task_queries[1:])

    again = push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=3)
    assert (again.pushed, again.skipped) == (0, 11) and len(label_studio.predictions) == 11
    assert label_studio.imports == 3


def test_tasks_predicted_by_another_version_are_predicted_again(backend, label_studio, ls_client):
    version = backend.train(PROJECT, annotations())["model_version"]
    label_studio.predictions = [{"task": 100, "model_version": version, "result": []},
                                {"task": 101, "model_version": "someone-else", "result": []}]
    report = push_predictions(backend, ls_client, PROJECT, batch_size=3, page_size=5)
    assert (report.pushed, report.skipped) == (10, 1)
    assert sorted(p["task"] for p in label_studio.predictions if p["model_version"] == version) == sorted(
        label_studio.truth)


def test_a_failed_push_resumes_without_predicting_a_task_twice(backend, label_studio, ls_client):
    backend.train(PROJECT, annotations())
    label_studio.fail_import_at = 2  # the second import call is lost
    with pytest.raises(LabelStudioError, match="answered 500"):
        push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=4, import_size=4)
    assert len(label_studio.predictions) == 4
    resumed = push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=4, import_size=4)
    assert (resumed.pushed, resumed.skipped) == (7, 4)
    assert sorted(p["task"] for p in label_studio.predictions) == sorted(label_studio.truth)


def test_ctrl_c_stores_what_was_predicted_and_the_next_run_does_the_rest(backend, label_studio, ls_client,
                                                                         monkeypatch):
    backend.train(PROJECT, annotations())
    predict, calls = backend.predict, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(*args, **kwargs)

    monkeypatch.setattr(backend, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=20, import_size=100)
    assert sorted(p["task"] for p in label_studio.predictions) == [100, 101, 102, 103]  # two batches, kept
    monkeypatch.setattr(backend, "predict", predict)
    resumed = push_predictions(backend, ls_client, PROJECT, batch_size=2, page_size=20, import_size=100)
    assert (resumed.pushed, resumed.skipped) == (7, 4)
    assert sorted(p["task"] for p in label_studio.predictions) == sorted(label_studio.truth)


def test_predictions_label_studio_did_not_create_are_reported(backend, label_studio, ls_client):
    backend.train(PROJECT, annotations())
    label_studio.drop_tasks = {103, 104}
    report = push_predictions(backend, ls_client, PROJECT, batch_size=5, page_size=5, import_size=5)
    assert report.pushed == 9 and len(report.failed) == 1
    assert "Label Studio stored 3 of 5 predictions for tasks 100..104" in report.failed[0]
    again = push_predictions(backend, ls_client, PROJECT, batch_size=5, page_size=5, import_size=5)
    assert (again.pushed, again.skipped, len(again.failed)) == (0, 9, 1)  # those two are tried again


def test_a_slow_model_sends_its_predictions_at_least_every_so_often(backend, label_studio, ls_client, monkeypatch):
    backend.train(PROJECT, annotations())
    monkeypatch.setattr("lsbackend.bulk.SEND_EVERY_SECONDS", 0.0)  # every batch counts as "a while"
    report = push_predictions(backend, ls_client, PROJECT, batch_size=3, page_size=20, import_size=100)
    assert report.pushed == 11 and label_studio.imports == 4  # batches of 3, 3, 3, 2


def test_a_new_version_predicts_the_tasks_again(backend, label_studio, ls_client):
    backend.train(PROJECT, annotations())
    push_predictions(backend, ls_client, PROJECT)
    newer = backend.train(PROJECT, annotations())["model_version"]
    report = push_predictions(backend, ls_client, PROJECT)
    assert (report.version, report.pushed, report.skipped) == (newer, 11, 0)


def cli(model_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsbackend", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**ENV, "MODEL_DIR": str(model_dir), **env}, timeout=300)


@pytest.mark.slow


def test_the_cli_pushes_with_a_progress_bar_and_reports_throughput(tmp_path, label_studio):
    export = [{"id": a["task"]["id"], "data": a["task"]["data"], "annotations": [a]} for a in annotations()]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert cli(tmp_path / "models", "train", str(tmp_path / "export.json"), "--project", PROJECT).returncode == 0
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": LEGACY_TOKEN}
    done = cli(tmp_path / "models", "predict", "--push", "--project", PROJECT, "--batch-size", "4",
               "--import-size", "8", **env)
    assert done.returncode == 0, done.stderr
    assert "11 predictions stored, 0 tasks already predicted, 0 failed" in done.stdout and "tasks/s" in done.stdout
    assert "importing predictions" in done.stdout and "predicting" in done.stdout
    assert "11/11" in done.stderr  # tqdm's bar
    assert len(label_studio.predictions) == 11 and label_studio.imports == 2


def test_push_without_label_studio_settings_names_them(tmp_path):
    env = {k: v for k, v in ENV.items() if not k.startswith("LABEL_STUDIO")}
    proc = subprocess.run([sys.executable, "-m", "lsbackend", "predict", "--push", "--project", PROJECT], cwd=ROOT,
                          capture_output=True, text=True, env={**env, "MODEL_DIR": str(tmp_path)}, timeout=120)
    assert proc.returncode == 2 and "--push needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY" in proc.stderr
