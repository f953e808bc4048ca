"""``python -m lsbackend evaluate`` reads a real Label Studio 1.23.2 project's annotations through its API.

The project is annotated in Label Studio with no backend connected, so the
backend records nothing by webhook: a version trained from the project's
export (holding out a slice of tasks) can only be scored on annotations read
through Label Studio's API with ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .label_studio import LabelStudio, LabelStudioClient, choices_result
from .test_label_studio import NEGATIVE, POSITIVE

pytestmark = [pytest.mark.slow, pytest.mark.integration]
COPIES = 4  # 40 annotated tasks: enough to hold out a slice of them


def cli(baked: Path, model_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")}
    clean.update(MODEL_DIR=str(model_dir), EVAL_MIN_ANNOTATIONS="10", EVAL_HOLDOUT="0.25", **env)
    return subprocess.run([sys.executable, "-m", "lsbackend", *args], cwd=baked, env=clean, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.parametrize("model_type", ["text_classification"], indirect=True)
def test_evaluate_scores_a_version_on_annotations_read_from_label_studio(
    ls_client: LabelStudioClient, label_studio: LabelStudio, baked_dir: Path, tmp_path: Path
) -> None:
    project_id = ls_client.create_project("LS evaluate", (baked_dir / "label_config.xml").read_text())["id"]
    texts = ([(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]) * COPIES
    tasks = ls_client.import_tasks(project_id, [{"text": t} for t, _ in texts])
    for task, (_, label) in zip(tasks, texts, strict=True):
        ls_client.create_annotation(task["id"], choices_result("sentiment", "text", label))
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls_client._call("GET", f"/api/projects/{project_id}/export",
                                                 params={"exportType": "JSON"})))
    model_dir = tmp_path / "models"

    trained = cli(baked_dir, model_dir, "train", str(export), "--project", str(project_id))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    status = json.loads(trained.stdout)
    assert status["held_out"] > 0 and status["promotion"]["promoted"], status

    alone = cli(baked_dir, model_dir, "evaluate", "--project", str(project_id))
    assert alone.returncode == 1 and "has no annotations to score against" in alone.stderr, alone.stderr

    api = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    proc = cli(baked_dir, model_dir, "evaluate", "--project", str(project_id), "--json", **api)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["annotations"] == len(tasks) and report["held_out"] == status["held_out"], report
    (row,) = report["versions"]
    assert row["version"] == status["model_version"] == report["current"]
    assert row["score"] >= 0.8 and row["examples"] == status["held_out"], row
    assert {"Positive", "Negative"} <= set(row["per_label"])
    assert sum(r["support"] for r in row["per_label"].values()) == status["held_out"]
