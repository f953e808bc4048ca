"""Tests of the gazetteer model (the user's own tests/test_model.py)."""

from __future__ import annotations

import pickle

from lsbackend.ids import project_key
from model import GazetteerTagger

from conftest import captured

CONFIG = captured("setup_ner")["schema"]


def span(start: int, end: int, label: str) -> dict:
    return {"from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "labels": [label]}}


TRAINING = [{"id": 1, "result": [span(0, 5, "PER"), span(15, 21, "LOC"), span(40, 99, "ORG")],
             "task": {"id": 1, "data": {"text": "Alice moved to Berlin last year."}}}]


def test_annotated_names_are_found_again_with_their_labels():
    model = GazetteerTagger(CONFIG)
    output = model.fit(TRAINING)
    assert pickle.loads(pickle.dumps(output)) == output and len(model.skipped) == 1  # the span past the end
    trained = GazetteerTagger(CONFIG, train_output=output)
    [prediction] = trained.predict([{"id": 2, "data": {"text": "In Berlin, Alice met Bob."}}])
    found = [(item["value"]["text"], item["value"]["labels"]) for item in prediction["result"]]
    assert found == [("Berlin", ["LOC"]), ("Alice", ["PER"])]


def test_the_server_answers_with_spans_without_scores(client, backend):
    client.post("/setup", json=captured("setup_ner"))
    backend.store(project_key(captured("setup_ner")["project"])).save_model(GazetteerTagger(CONFIG).fit(TRAINING))
    body = {**captured("predict_ner"), "tasks": [{"id": 1, "data": {"text": "Alice"}}]}
    [item] = client.post("/predict", json=body).get_json()["results"][0]["result"]
    assert item["value"]["start"] == 0 and item["value"]["end"] == 5 and "score" not in item
