"""The text classifier itself: it learns from annotations and predicts the config's choices."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import joblib
import pytest
from fake_label_studio import LEGACY_TOKEN, FakeLabelStudio

from lsbackend import TaskDataError
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings
from model import TextClassifier

import examples
from conftest import EXAMPLES_CONFIG, captured, holdout_request

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


# --- multi-label: <Choices choice="multiple"> ------------------------------------------------------------
TOPICS_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
    '<Choice value="Battery"/><Choice value="Screen"/><Choice value="Price"/></Choices></View>'
)
TOPIC_WORDS = {"Battery": ["battery", "charge", "charging"], "Screen": ["screen", "display", "pixels"],
               "Price": ["price", "cheap", "expensive"]}


def topic_pairs(combos: list[list[str]], seed: int):
    """A text naming each topic with one of its words, in random order, and the topics as the annotation."""
    rng = random.Random(seed)
    pairs = []
    for topics in combos:
        words = [rng.choice(TOPIC_WORDS[t]) for t in topics]
        rng.shuffle(words)
        text = "the " + " and the ".join(words) + rng.choice([" are fine", " could be better", " surprised me"])
        result = [{"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": topics}}]
        pairs.append(({"text": text}, result))
    return pairs


COMBOS = [["Battery"], ["Screen"], ["Price"], ["Battery", "Screen"], ["Screen", "Price"], ["Battery", "Price"]] * 10


def test_multiple_choice_predicts_every_label_above_the_threshold_with_its_score():
    model = TextClassifier(TOPICS_CONFIG)
    model = TextClassifier(TOPICS_CONFIG, train_output=model.fit(annotations(topic_pairs(COMBOS, 1))))
    held = [["Battery", "Screen"], ["Price"], ["Screen", "Price"], ["Battery"]]
    predictions = model.predict([{"id": i, "data": d} for i, (d, _) in enumerate(topic_pairs(held, 2))])
    for prediction, topics in zip(predictions, held, strict=True):
        (item,) = prediction["result"]  # one result item naming every chosen label, in config order
        assert item["value"]["choices"] == topics, (prediction, topics)
        assert 0.5 <= item["score"] == prediction["score"] <= 1.0


def test_multiple_choice_threshold_comes_from_extra_params():
    output = TextClassifier(TOPICS_CONFIG).fit(annotations(topic_pairs(COMBOS, 1)))
    strict = TextClassifier(TOPICS_CONFIG, train_output=output, extra_params={"score_threshold": 0.999})
    prediction = strict.predict([{"id": 1, "data": {"text": "the battery and the display are fine"}}])[0]
    assert prediction["result"] == [] and 0.0 < prediction["score"] < 0.999


def test_a_text_given_by_url_is_fetched_from_label_studio_and_predicted(tmp_path):
    """<Text valueType="url">: the task holds a link to the text (an upload on Label Studio here), which the
    model reads with the API key and predicts exactly as the same text given inline; a link that cannot be
    fetched costs only its own task, with the reason."""
    label_studio = FakeLabelStudio()
    try:
        (data, _), *_ = examples.holdout()
        label_studio.uploads["/data/upload/5/doc.txt"] = "\ufeff".encode() + data["text"].encode()
        settings = Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG,
                            label_studio_url=label_studio.url, label_studio_api_key=LEGACY_TOKEN)
        by_url = captured("setup_text")["schema"].replace('value="$text"', 'value="$text" valueType="url"')
        client = create_app(Backend(TextClassifier, settings)).test_client()
        assert client.post("/setup", json={**captured("setup_text"), "schema": by_url}).status_code == 200
        inline = trained().predict([{"id": 1, "data": data}])[0]
        output = trained().train_output
        Backend(TextClassifier, settings).store("5").save_model(output)
        tasks = [{"id": 1, "data": {"text": "/data/upload/5/doc.txt"}},
                 {"id": 2, "data": {"text": "/data/upload/5/missing.txt"}}]
        response = client.post("/predict", json={"tasks": tasks, "project": "5", "label_config": by_url})
        first, second = response.get_json()["results"]
        assert first["result"] == inline["result"] and first["result"], first
        assert second["result"] == [] and "404" in second["error"] and "missing.txt" in second["error"]
        assert f"Token {LEGACY_TOKEN}" in label_studio.auth_seen
    finally:
        label_studio.close()



# --- starting from existing weights: MODEL_URI ---------------------------------------------------------------
def test_a_joblib_pipeline_from_model_uri_predicts_before_any_training(tmp_path, settings):
    path = tmp_path / "sentiment.joblib"
    joblib.dump(trained().pipeline, path)  # what a user trained last month, saved the usual way
    backend = Backend(TextClassifier, replace(settings, model_uri=str(path)))
    assert backend.pretrained.wait(60)
    client = create_app(backend).test_client()
    version = client.post("/setup", json=captured("setup_text")).get_json()["model_version"]
    assert version == "pretrained-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    results = client.post("/predict", json=holdout_request()).get_json()["results"]
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
    assert {r["model_version"] for r in results} == {version}


def test_a_model_uri_file_that_is_no_classifier_is_refused_with_the_reason(tmp_path, settings):
    path = tmp_path / "numbers.joblib"
    joblib.dump([1, 2, 3], path)
    backend = Backend(TextClassifier, replace(settings, model_uri=str(path)))
    assert backend.pretrained.wait(60)
    response = create_app(backend).test_client().post("/predict", json=holdout_request())
    assert response.status_code == 503 and "MODEL_URI holds a list, not a fitted classifier" in response.status
