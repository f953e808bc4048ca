"""A real Label Studio 1.23.2 connects to a baked backend, gets predictions, and trains it.

This is the user's path through the product: connect the backend to a project,
retrieve predictions, annotate some tasks, press Train, retrieve predictions
again. Every step goes through Label Studio's API; the backend is only asked
for its training status (a backend endpoint Label Studio does not know about).

Run with ``pytest -m integration tests/integration``. The first run installs
Label Studio into a cached venv (see ``label_studio.default_venv_dir``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from .baked_backend import BakedBackend
from .label_studio import LabelStudioClient, choices_result, chosen_labels

pytestmark = [pytest.mark.slow, pytest.mark.integration]

UNTRAINED = "untrained"

# Each class has its own sentiment words (the filler, "experience", "product",
# "work", ..., occurs in both), so any bag-of-words model trained on the
# annotated texts separates the rest: every held-back text reuses sentiment
# words from the annotated texts of its class and none of the other's.
POSITIVE = [
    "wonderful delightful experience, truly excellent",
    "excellent service and a wonderful friendly staff",
    "delightful and lovely, I love it",
    "superb quality, excellent and lovely",
    "I love this wonderful superb product",
    "fantastic, delightful, simply superb",
    # held back from annotation:
    "lovely wonderful and excellent",
    "I love it, fantastic and superb",
    "delightful fantastic lovely work",
    "excellent, wonderful, love it",
]
NEGATIVE = [
    "terrible awful experience, truly horrible",
    "horrible service and a rude awful staff",
    "awful and disgusting, I hate it",
    "dreadful quality, horrible and disgusting",
    "I hate this terrible dreadful product",
    "rude, awful, simply dreadful",
    # held back from annotation:
    "disgusting terrible and horrible",
    "I hate it, rude and dreadful",
    "awful rude disgusting work",
    "horrible, terrible, hate it",
]
ANNOTATED_PER_CLASS = 6


@dataclass(frozen=True)
class ChoicesConfig:
    """Where a Choices-over-Text config puts things: the names annotations must use."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def read_choices_config(xml: str) -> ChoicesConfig:
    """Read control/object names from the baked config instead of assuming them."""
    root = ET.fromstring(xml)
    choices = root.find(".//Choices")
    assert choices is not None, f"no <Choices> in the baked label config:\n{xml}"
    text = next(el for el in root.iter("Text") if el.get("name") == choices.get("toName"))
    return ChoicesConfig(
        from_name=choices.attrib["name"],
        to_name=choices.attrib["toName"],
        data_key=text.attrib["value"].lstrip("$"),
        labels=tuple(choice.attrib["value"] for choice in choices.iter("Choice")),
    )


def predictions_by_task(client: LabelStudioClient, project_id: int) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = defaultdict(list)
    for prediction in client.list_predictions(project_id):
        grouped[prediction["task"]].append(prediction)
    return grouped


def test_label_studio_predicts_trains_and_predicts_again(
    ls_client: LabelStudioClient, backend: BakedBackend, baked_text_backend: Path
) -> None:
    label_config = (baked_text_backend / "label_config.xml").read_text()
    config = read_choices_config(label_config)
    assert {"Positive", "Negative"} <= set(config.labels), config

    # A project with the baked config, and 20 tasks whose true label we know.
    project = ls_client.create_project("LS Integration test", label_config)
    project_id = project["id"]
    texts = [(text, "Positive") for text in POSITIVE] + [(text, "Negative") for text in NEGATIVE]
    tasks = ls_client.import_tasks(project_id, [{config.data_key: text} for text, _ in texts])
    truth = {task["id"]: label for task, (_, label) in zip(tasks, texts, strict=True)}
    positive_ids, negative_ids = [t["id"] for t in tasks[: len(POSITIVE)]], [t["id"] for t in tasks[len(POSITIVE) :]]
    annotated_early = [positive_ids[0], negative_ids[0]]
    annotated_later = positive_ids[1:ANNOTATED_PER_CLASS] + negative_ids[1:ANNOTATED_PER_CLASS]
    held_back = positive_ids[ANNOTATED_PER_CLASS:] + negative_ids[ANNOTATED_PER_CLASS:]

    def annotate(task_ids: list[int]) -> None:
        for task_id in task_ids:
            ls_client.create_annotation(task_id, choices_result(config.from_name, config.to_name, truth[task_id]))

    # Annotations made before the backend is connected never reach it by webhook
    # (there is none yet): only its own Label Studio API call can fetch them.
    annotate(annotated_early)

    # Connect: Label Studio checks /health and /setup, and adds a webhook to <backend>/webhook.
    ml_backend = ls_client.connect_ml_backend(project_id, backend.url, "baked backend")
    assert ml_backend["state"] == "CO", f"Label Studio does not see the backend as connected: {ml_backend}"
    assert ml_backend["model_version"] == UNTRAINED, ml_backend
    webhooks = ls_client.list_webhooks(project_id)
    assert any(hook["url"] == f"{backend.url}/webhook" and hook["is_active"] for hook in webhooks), webhooks
    assert backend.training_status(project_id)["state"] == "idle"

    # Before training: one empty prediction per task, versioned "untrained".
    ls_client.retrieve_predictions(project_id, list(truth))
    before = predictions_by_task(ls_client, project_id)
    assert sorted(before) == sorted(truth), f"tasks without a stored prediction: {set(truth) - set(before)}"
    for task_id, stored in before.items():
        assert len(stored) == 1, f"task {task_id} has {len(stored)} predictions: {stored}"
        assert stored[0]["model_version"] == UNTRAINED, stored[0]
        assert stored[0]["result"] == [], stored[0]

    # Annotate through Label Studio; each save fires ANNOTATION_CREATED at <backend>/webhook
    # (synchronously: Label Studio without Redis delivers webhooks inside the request).
    annotate(annotated_later)
    recorded = backend.training_status(project_id).get("recorded_annotations")
    assert recorded == len(annotated_later), (
        f"backend recorded {recorded} annotations from webhooks, expected {len(annotated_later)}"
    )

    # Train: Label Studio posts START_TRAINING to /webhook; the backend trains in the background.
    ls_client.start_training(ml_backend["id"])
    status = backend.wait_for_training(project_id, logs=[backend.process])
    assert status["state"] == "succeeded", f"training did not succeed: {status}"
    new_version = status["model_version"]
    assert new_version and new_version != UNTRAINED, status
    trained_on = len(annotated_early) + len(annotated_later)
    assert status.get("annotations") == trained_on, (
        f"trained on {status.get('annotations')} annotations, expected {trained_on} "
        f"({len(annotated_later)} by webhook + {len(annotated_early)} fetched with LABEL_STUDIO_API_KEY): {status}"
    )

    # Label Studio learns the new version from /setup and re-predicts every task.
    ls_client.retrieve_predictions(project_id, list(truth))
    assert ls_client.get_ml_backend(ml_backend["id"])["model_version"] == new_version
    after = predictions_by_task(ls_client, project_id)
    fresh = {task_id: [p for p in stored if p["model_version"] == new_version] for task_id, stored in after.items()}
    missing = [task_id for task_id in truth if len(fresh.get(task_id, [])) != 1]
    assert not missing, f"tasks without exactly one {new_version} prediction: {[after.get(t) for t in missing]}"
    wrong = {
        task_id: (truth[task_id], chosen_labels(fresh[task_id][0]))
        for task_id in held_back
        if chosen_labels(fresh[task_id][0]) != [truth[task_id]]
    }
    assert not wrong, f"held-back tasks predicted wrongly (task: (truth, predicted)): {wrong}"
