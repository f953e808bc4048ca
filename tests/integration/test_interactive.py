"""Interactive pre-annotation and linked texts, through a real Label Studio 1.23.

- The labeling editor's call: ``POST /api/ml/{id}/interactive-annotating`` with a span the annotator
  just labeled, on a backend connected with "Interactive preannotations" on; Label Studio sends it to
  the backend's ``/predict`` and hands the suggestion back.
- ``<Text valueType="url">``: the task holds a link to the text (served by a file server, as a bucket
  or web server would); the backend fetches it to propose NER spans, and to train and classify text.
"""

from __future__ import annotations

from pathlib import Path

from harness import FileServer

from .baked_backend import start_backend
from .label_studio import LabelStudio, LabelStudioClient, choices_result, chosen_labels
from .test_label_studio import NEGATIVE, POSITIVE, UNTRAINED, predictions_by_task

ACME = "Acme Corp hired Alice Smith. Later Alice Smith left Acme Corp for Globex, and ACME CORP moved."


def by_url(config: str) -> str:
    linked = config.replace('value="$text"', 'value="$text" valueType="url"')
    assert linked != config, config
    return linked


def test_an_interactive_span_comes_back_as_suggestions_through_label_studio(
    label_studio: LabelStudio, ls_client: LabelStudioClient, baked_variants, file_server: FileServer, tmp_path: Path
) -> None:
    baked = baked_variants("ner")
    (file_server.root / "acme.txt").write_text(ACME, encoding="utf-8")
    project = ls_client.create_project("LS Interactive ner", by_url((baked / "label_config.xml").read_text()))
    [task] = ls_client.import_tasks(project["id"], [{"text": f"{file_server.url}/acme.txt"}])
    backend = start_backend(baked, tmp_path, label_studio.url, label_studio.token)
    try:
        ml = ls_client.connect_ml_backend(project["id"], backend.url, "interactive backend", interactive=True)
        assert ml["state"] == "CO" and ml["is_interactive"], ml
        span = {"id": "vQ3_pL8xZa", "type": "labels", "from_name": "label", "to_name": "text", "origin": "manual",
                "value": {"start": 0, "end": 9, "text": "Acme Corp", "labels": ["ORG"]}}
        answer = ls_client.interactive_annotating(ml["id"], task["id"], {"result": [span]})
        assert "errors" not in answer, answer
        suggestion = answer["data"]
        second = ACME.index("Acme Corp", 1)  # from the text the backend fetched by its link
        assert [(r["value"]["start"], r["value"]["text"], r["value"]["labels"]) for r in suggestion["result"]] == [
            (second, "Acme Corp", ["ORG"])], suggestion
        assert suggestion["model_version"] == UNTRAINED
        # Label Studio stores nothing of an interactive answer.
        assert ls_client.list_predictions(project["id"]) == []
        # Without "Interactive preannotations" Label Studio refuses before calling the backend.
        plain = ls_client.connect_ml_backend(project["id"], backend.url, "plain backend")
        refused = ls_client.interactive_annotating(plain["id"], task["id"], {"result": [span]})
        assert refused == {"errors": ["Model is not set to be used for interactive preannotations"]}, refused
    finally:
        backend.stop()


def test_texts_given_by_link_are_fetched_trained_on_and_classified_through_label_studio(
    label_studio: LabelStudio, ls_client: LabelStudioClient, baked_variants, file_server: FileServer, tmp_path: Path
) -> None:
    baked = baked_variants("text_classification")
    config = by_url((baked / "label_config.xml").read_text())
    project = ls_client.create_project("LS Linked texts", config)
    links, truth = [], []
    for i, (text, label) in enumerate([(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]):
        (file_server.root / f"review-{i}.txt").write_text(text, encoding="utf-8")
        links.append({"text": f"{file_server.url}/review-{i}.txt"})
        truth.append(label)
    tasks = ls_client.import_tasks(project["id"], links)
    held = {tasks[i]["id"]: truth[i] for i in (len(POSITIVE) - 1, len(tasks) - 1)}  # a held-back text of each
    backend = start_backend(baked, tmp_path, label_studio.url, label_studio.token)
    try:
        ml = ls_client.connect_ml_backend(project["id"], backend.url, "linked texts backend")
        assert ml["state"] == "CO", ml
        for task, label in zip(tasks, truth, strict=True):
            if task["id"] not in held:  # "sentiment" over "text": the default config's names
                ls_client.create_annotation(task["id"], choices_result("sentiment", "text", label))
        ls_client.start_training(ml["id"])
        status = backend.wait_for_training(project["id"], logs=[backend.process])
        assert status["state"] == "succeeded" and status["annotations"] == len(tasks) - len(held), status
        ls_client.retrieve_predictions(project["id"], list(held))
        stored = predictions_by_task(ls_client, project["id"])
        fresh = {t: [p for p in stored[t] if p["model_version"] == status["model_version"]] for t in held}
        assert {t: chosen_labels(p[0]) for t, p in fresh.items()} == {t: [label] for t, label in held.items()}, fresh
    finally:
        backend.stop()
