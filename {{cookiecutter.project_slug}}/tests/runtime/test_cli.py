"""The command line: check a config, train from an export, predict tasks for import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import examples
from conftest import ROOT, SHAPE, captured


def cli(*args: str, model_dir, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with the config the examples are labeled with (Label Studio's captured one)."""
    config = model_dir.parent / "captured_config.xml"
    config.write_text(captured(f"setup_{SHAPE}")["schema"], encoding="utf-8")
    env = {**os.environ, "MODEL_DIR": str(model_dir), "LABEL_CONFIG": str(config), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lsbackend", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow


def test_check_accepts_the_repos_config(tmp_path):
    proc = cli("check", str(ROOT / "label_config.xml"), model_dir=tmp_path / "models")
    assert proc.returncode == 0 and "fits" in proc.stdout


@pytest.mark.slow


def test_check_explains_a_config_that_does_not_fit(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<View><Image name="i" value="$i"/><PolygonLabels name="r" toName="i">'
                   '<Label value="Car"/></PolygonLabels></View>')  # segmentation: no variant's model
    proc = cli("check", str(bad), model_dir=tmp_path / "models")
    assert proc.returncode == 1
    assert "does not fit" in proc.stderr and "A config that works" in proc.stderr


@pytest.mark.slow


def test_train_from_an_export_then_predict_for_import(tmp_path):
    export = [{"id": i, "data": d, "annotations": [{"id": 10 + i, "result": r}]}
              for i, (d, r) in enumerate(examples.training_set())]
    (tmp_path / "export.json").write_text(json.dumps(export))
    trained = cli("train", str(tmp_path / "export.json"), model_dir=tmp_path / "models")
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["model_version"]
    tasks = [{"data": d} for d, _ in examples.holdout()]
    out = tmp_path / "preds.json"
    proc = cli("predict", "-", "-o", str(out), model_dir=tmp_path / "models", stdin=json.dumps(tasks))
    assert proc.returncode == 0, proc.stderr
    predicted = json.loads(out.read_text())
    assert [t["data"] for t in predicted] == [t["data"] for t in tasks]
    assert all(t["predictions"][0]["model_version"] == version for t in predicted)
    assert [examples.predicted_label(t["predictions"][0]) for t in predicted] == [lab for _, lab in examples.holdout()]


@pytest.mark.slow


def test_predict_names_a_task_without_the_configured_field(tmp_path):
    proc = cli("predict", "-", model_dir=tmp_path / "models", stdin=json.dumps([{"data": {"wrong": "x"}}]))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: Task 0 has no data field")
    assert "Traceback" not in proc.stderr
