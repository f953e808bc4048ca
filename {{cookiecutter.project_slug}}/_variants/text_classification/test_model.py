"""The text classifier itself: it learns from annotations and predicts the config's choices."""

from __future__ import annotations

import pytest

from lsbackend import TaskDataError
from lsbackend.label_studio_api import normalize_annotation
from model import TextClassifier

import examples
from conftest import captured

CONFIG = captured("setup_text")["schema"]


def annotations(pairs):
    return [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]


def trained() -> TextClassifier:
    model = TextClassifier(CONFIG)
    output = model.fit(annotations(examples.training_set()))
    return TextClassifier(CONFIG, train_output=output, model_version="v1")


def test_untrained_model_predicts_no_labels():
    tasks = captured("predict_text")["tasks"]
    predictions = TextClassifier(CONFIG).predict(tasks)
    assert [p["result"] for p in predictions] == [[] for _ in tasks]
    assert {p["model_version"] for p in predictions} == {"untrained"}


def test_learns_labels_of_held_out_texts():
    model = trained()
    data, labels = zip(*examples.holdout(), strict=True)
    predictions = model.predict([{"id": i, "data": d} for i, d in enumerate(data)])
    predicted = [p["result"][0]["value"]["choices"][0] for p in predictions]
    assert predicted == list(labels)


def test_result_items_come_from_the_config():
    prediction = trained().predict([{"id": 1, "data": {"text": "I love it"}}])[0]
    item = prediction["result"][0]
    assert (item["from_name"], item["to_name"], item["type"]) == ("sentiment", "text", "choices")
    assert 0.0 < prediction["score"] <= 1.0 and prediction["model_version"] == "v1"


def test_labels_removed_from_the_config_are_never_predicted():
    model = trained()
    narrowed = CONFIG.replace('<Choice value="Positive"/>', "")
    model = TextClassifier(narrowed, train_output=model.train_output)
    predictions = model.predict([{"id": 1, "data": {"text": "I love it, wonderful"}}])
    assert predictions[0]["result"][0]["value"]["choices"] != ["Positive"]


def test_training_with_one_label_fails_clearly():
    positive_only = [p for p in examples.training_set() if p[1][0]["value"]["choices"] == ["Positive"]]
    with pytest.raises(ValueError, match="at least 2 different labels"):
        TextClassifier(CONFIG).fit(annotations(positive_only))


def test_non_text_data_names_the_task_and_field():
    with pytest.raises(TaskDataError, match="Task 7 has non-text data in 'text'"):
        trained().predict([{"id": 7, "data": {"text": 42}}])
