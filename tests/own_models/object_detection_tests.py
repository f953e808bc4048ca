"""Tests of the blob detector (the user's own tests/test_model.py)."""

from __future__ import annotations

import base64
import io
import pickle

from PIL import Image, ImageDraw

from lsbackend.ids import project_key
from model import BlobDetector

from conftest import captured

CONFIG = captured("setup_detection")["schema"]


def picture(shapes: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    image = Image.new("RGB", (96, 64), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for shape, corners in shapes:
        (draw.rectangle if shape == "Square" else draw.ellipse)(corners, fill=(30, 30, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def box(corners: tuple[int, int, int, int], label: str, rotation: float = 0) -> dict:
    x1, y1, x2, y2 = corners
    value = {"x": x1 / 0.96, "y": y1 / 0.64, "width": (x2 - x1 + 1) / 0.96, "height": (y2 - y1 + 1) / 0.64,
             "rotation": rotation, "rectanglelabels": [label]}
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": value}


SQUARE, CIRCLE = (8, 8, 27, 27), (50, 30, 69, 49)
TRAINING = [{"id": 1, "result": [box(SQUARE, "Square"), box(CIRCLE, "Circle"), box(CIRCLE, "Circle", rotation=30)],
             "task": {"id": 1, "data": {"image": picture([("Square", SQUARE), ("Circle", CIRCLE)])}}}]


def test_blobs_are_boxed_and_named_by_their_fill():
    model = BlobDetector(CONFIG)
    output = model.fit(TRAINING)
    assert pickle.loads(pickle.dumps(output)) == output and len(model.skipped) == 1  # the rotated box
    trained = BlobDetector(CONFIG, train_output=output)
    image = picture([("Circle", (10, 10, 29, 29)), ("Square", (60, 34, 79, 53))])
    [prediction] = trained.predict([{"id": 2, "data": {"image": image}}])
    found = sorted((item["value"]["rectanglelabels"][0], round(item["value"]["x"])) for item in prediction["result"])
    assert found == [("Circle", 10), ("Square", 62)]


def test_the_server_answers_with_boxes_and_their_scores(client, backend):
    client.post("/setup", json=captured("setup_detection"))
    backend.store(project_key(captured("setup_detection")["project"])).save_model(BlobDetector(CONFIG).fit(TRAINING))
    body = {**captured("predict_detection"), "tasks": [{"id": 1, "data": {"image": picture([("Square", SQUARE)])}}]}
    [item] = client.post("/predict", json=body).get_json()["results"][0]["result"]
    assert item["value"]["rectanglelabels"] == ["Square"] and 0 <= item["score"] <= 1
