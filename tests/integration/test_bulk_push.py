"""``python -m lsbackend predict --push`` pre-annotates a real Label Studio 1.23.2 project, and resumes.

The backend starts from a joblib pipeline (MODEL_URI), so the project needs no
annotations: the command pages through the tasks with the Label Studio API,
predicts in batches and stores the predictions with the import API. Tasks that
hold only another model's prediction are predicted too. A second run stores
nothing (every task already has a prediction of that version); after some
predictions are deleted, a third run fills exactly those in.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .label_studio import LabelStudio, LabelStudioClient
from .test_label_studio import NEGATIVE, POSITIVE, predictions_by_task
from .test_pretrained import sentiment_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.integration]
COPIES = 15  # 20 texts x 15 = 300 tasks: several pages and batches


def push(baked: Path, label_studio: LabelStudio, project_id: int, model: Path, model_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token, MODEL_URI=str(model),
               MODEL_DIR=str(model_dir))
    command = [sys.executable, "-m", "lsbackend", "predict", "--push", "--project", str(project_id),
               "--batch-size", "40", "--page-size", "100", "--import-size", "120"]  # several pages and imports
    proc = subprocess.run(command, cwd=baked, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/300" in proc.stderr, proc.stderr  # the progress bar counted the whole project
    return proc.stdout


def stored(line: str) -> tuple[int, int]:
    match = re.search(r"(\d+) predictions stored, (\d+) tasks already predicted, 0 failed", line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


def ours(predictions: dict[int, list[dict]], version: str) -> dict[int, list[dict]]:
    """Per task, only the predictions of ``version``."""
    return {t: [p for p in found if p["model_version"] == version] for t, found in predictions.items()
            if any(p["model_version"] == version for p in found)}


@pytest.mark.parametrize("model_type", ["text_classification"], indirect=True)
def test_push_pre_annotates_every_task_once_and_resumes(
    ls_client: LabelStudioClient, label_studio: LabelStudio, baked_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "sentiment.joblib"
    sentiment_pipeline(model)
    version = "pretrained-" + hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    project_id = ls_client.create_project("LS bulk push", (baked_dir / "label_config.xml").read_text())["id"]
    texts = [(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]
    tasks = ls_client.import_tasks(project_id, [{"text": t} for t, _ in texts] * COPIES)
    truth = {task["id"]: texts[i % len(texts)][1] for i, task in enumerate(tasks)}
    others = sorted(truth)[::10]  # another model's predictions: these tasks still need ours
    other = [{"task": t, "model_version": "other-model", "score": 0.5,
              "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                          "value": {"choices": ["Neutral"]}}]} for t in others]
    assert ls_client._call("POST", f"/api/projects/{project_id}/import/predictions", json=other)["created"] == 30

    assert stored(push(baked_dir, label_studio, project_id, model, tmp_path / "models")) == (300, 0)
    predictions = ours(predictions_by_task(ls_client, project_id), version)
    assert sorted(predictions) == sorted(truth) and all(len(p) == 1 for p in predictions.values())
    chosen = {t: p[0]["result"][0]["value"]["choices"][0] for t, p in predictions.items()}
    assert sum(chosen[t] == truth[t] for t in truth) >= 0.9 * len(truth)

    assert stored(push(baked_dir, label_studio, project_id, model, tmp_path / "models")) == (0, 300)

    gone = sorted(truth)[::7]  # as if a run had stopped before these
    for task_id in gone:
        ls_client.delete_prediction(predictions[task_id][0]["id"])
    assert stored(push(baked_dir, label_studio, project_id, model, tmp_path / "models")) == (len(gone), 300 - len(gone))
    again = ours(predictions_by_task(ls_client, project_id), version)
    assert sorted(again) == sorted(truth) and all(len(p) == 1 for p in again.values())
