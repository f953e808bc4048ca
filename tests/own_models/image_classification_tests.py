"""Tests of the colour model (the user's own tests/test_model.py)."""

from __future__ import annotations

import base64
import io
import pickle

from PIL import Image

from lsbackend.ids import project_key
from model import ColourClassifier

from conftest import captured

CONFIG = captured("setup_image")["schema"]


def picture(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def annotation(i: int, colour: tuple[int, int, int], label: str) -> dict:
    result = [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    return {"id": i, "result": result, "task": {"id": i, "data": {"image": picture(colour)}}}


TRAINING = [annotation(1, (220, 30, 30), "Red"), annotation(2, (30, 30, 220), "Blue"),
            {"id": 3, "result": [], "task": {"id": 3, "data": {"image": "data:image/png;base64,bm90IGEgcG5n"}}}]


def test_the_nearest_learned_colour_names_the_image():
    model = ColourClassifier(CONFIG)
    output = model.fit(TRAINING)
    assert pickle.loads(pickle.dumps(output)) == output and len(model.skipped) == 1
    trained = ColourClassifier(CONFIG, train_output=output)
    predictions = trained.predict([{"id": 4, "data": {"image": picture((180, 60, 50))}}])
    assert predictions[0]["result"][0]["value"]["choices"] == ["Red"]


def test_the_server_answers_with_the_learned_colours(client, backend):
    client.post("/setup", json=captured("setup_image"))
    backend.store(project_key(captured("setup_image")["project"])).save_model(ColourClassifier(CONFIG).fit(TRAINING))
    body = {**captured("predict_image"), "tasks": [{"id": 1, "data": {"image": picture((20, 40, 200))}}]}
    [item] = client.post("/predict", json=body).get_json()["results"][0]["result"]
    assert item["value"]["choices"] == ["Blue"] and "score" not in item
