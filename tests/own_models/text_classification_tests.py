"""Tests of the keyword model (the user's own tests/test_model.py)."""

from __future__ import annotations

import pickle

from lsbackend.ids import project_key
from model import KeywordClassifier

from conftest import captured

CONFIG = captured("setup_text")["schema"]


def annotation(i: int, text: str, label: str) -> dict:
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
    return {"id": i, "result": result, "task": {"id": i, "data": {"text": text}}}


TRAINING = [annotation(1, "I love this, great", "Positive"), annotation(2, "I hate this, awful", "Negative"),
            {"id": 3, "result": "not a list", "task": {"id": 3, "data": {"text": "odd"}}}]


def test_keywords_seen_under_one_label_pick_it():
    model = KeywordClassifier(CONFIG)
    output = model.fit(TRAINING)
    assert pickle.loads(pickle.dumps(output)) == output and len(model.skipped) == 1
    trained = KeywordClassifier(CONFIG, train_output=output)
    predictions = trained.predict([{"id": 9, "data": {"text": "Great stuff"}}, {"id": 10, "data": {"text": "meh"}}])
    assert predictions[0]["result"][0]["value"]["choices"] == ["Positive"]
    assert predictions[1]["result"] == []


def test_the_server_answers_with_the_trained_keywords(client, backend):
    client.post("/setup", json=captured("setup_text"))
    backend.store(project_key(captured("setup_text")["project"])).save_model(KeywordClassifier(CONFIG).fit(TRAINING))
    body = {**captured("predict_text"), "tasks": [{"id": 1, "data": {"text": "awful"}}]}
    result = client.post("/predict", json=body).get_json()["results"][0]["result"]
    assert result[0]["value"]["choices"] == ["Negative"] and "score" not in result[0]
