"""Upstream's own ``sklearn_text_classifier`` example, copied over a baked repo's model.py, through a real Label Studio.

The user's path for an existing upstream backend: bake, replace ``model.py`` with the upstream
file as it is, start the production server, connect it, annotate, press Train, get predictions.
The model file is the one vendored byte for byte in the baked repo's ``tests/runtime/upstream/``; it
fetches its training data with ``label_studio_sdk.Client(...).get_labeled_tasks()``, which the
``label_studio_sdk`` stand-in answers with the annotations the runtime collected (by webhook and
through Label Studio's API).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .baked_backend import BakedBackend, start_backend
from .label_studio import LabelStudio, LabelStudioClient
from .test_label_studio import UNTRAINED, predictions_by_task, text_scenario

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Two choices: upstream's example maps class indices onto every label of the config, so a label
#: nobody annotated would shift the others (its bug, not ours; docs/upstream.md says so).
CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/>
  </Choices>
</View>"""


@pytest.fixture
def upstream_backend(baked_variants, label_studio: LabelStudio, personal_access_token: str,
                     tmp_path: Path) -> Iterator[BakedBackend]:
    """A copy of the text bake whose model.py is upstream's sklearn_text_classifier, unchanged, served."""
    repo = tmp_path / "repo"
    shutil.copytree(baked_variants("text_classification"), repo)
    shutil.copyfile(repo / "tests" / "runtime" / "upstream" / "sklearn_text_classifier" / "model.py", repo / "model.py")
    server = start_backend(repo, tmp_path, label_studio.url, personal_access_token)
    try:
        yield server
    finally:
        server.stop()


def test_upstream_sklearn_text_classifier_trains_and_predicts_through_label_studio(
    ls_client: LabelStudioClient, upstream_backend: BakedBackend
) -> None:
    backend = upstream_backend
    project_id = ls_client.create_project("LS Integration upstream", CONFIG)["id"]
    scenario = text_scenario(ls_client, project_id, CONFIG)
    cases = {case.task_id: case for case in scenario.cases}
    early = [c for c in scenario.cases if c.role == "early"]
    later = [c for c in scenario.cases if c.role == "later"]
    held_back = [c for c in scenario.cases if c.role == "held"]
    for case in early:  # before the backend is connected: only the runtime's API call finds these
        ls_client.create_annotation(case.task_id, scenario.annotation(case))

    ml_backend = ls_client.connect_ml_backend(project_id, backend.url, "upstream model", None)
    assert ml_backend["state"] == "CO", ml_backend
    assert ml_backend["model_version"] == UNTRAINED, "the served version, not the model's own 'v0.0.1'"

    ls_client.retrieve_predictions(project_id, list(cases))
    before = predictions_by_task(ls_client, project_id)
    assert sorted(before) == sorted(cases)
    assert {p["model_version"] for stored in before.values() for p in stored} == {UNTRAINED}

    for case in later:  # each save reaches /webhook
        ls_client.create_annotation(case.task_id, scenario.annotation(case))
    assert backend.training_status(project_id)["recorded_annotations"] == len(later)

    ls_client.start_training(ml_backend["id"])
    status = backend.wait_for_training(project_id, logs=[backend.process])
    assert status["state"] == "succeeded", status
    assert status["annotations"] == len(early) + len(later), status
    new_version = status["model_version"]

    ls_client.retrieve_predictions(project_id, list(cases))
    assert ls_client.get_ml_backend(ml_backend["id"])["model_version"] == new_version
    after = predictions_by_task(ls_client, project_id)
    fresh = {task: [p for p in stored if p["model_version"] == new_version] for task, stored in after.items()}
    assert all(len(fresh.get(task, [])) == 1 for task in cases), after
    wrong = {case.task_id: (case.truth, scenario.predicted(fresh[case.task_id][0]))
             for case in held_back if scenario.predicted(fresh[case.task_id][0]) != case.truth}
    assert not wrong, f"held-back tasks predicted wrong by the trained upstream model: {wrong}"
