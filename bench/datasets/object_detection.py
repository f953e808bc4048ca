"""Seeded synthetic scenes for object detection: several squares and circles per picture, boxes as truth.

Drawn here with Pillow (no downloads) as PNG data: URIs. Not trivial on purpose:
pictures are not square (their width and height vary from 80 to 160 pixels),
hold 1 to 5 objects of random size (10 to 34 pixels) and colour, squares lean by up to 15 degrees (their box is the one
an annotator draws around them), circles are slightly squashed; distractors (thin
lines, small specks and triangles of the objects' sizes) are not objects, objects may touch or
overlap a little, contrast to the background is sometimes low; every pixel gets Gaussian noise.

``score`` matches predicted boxes to the truth at IoU >= 0.5, with the baked
runtime's own arithmetic (``lsbackend.boxes``, imported after ``evaluate.py``
loaded the baked repo), and reports precision, recall, F1 and mAP@0.5 (mean over
labels of the area under the precision-recall curve of the boxes the model
returned, so boxes under its score threshold count as missed).
"""

from __future__ import annotations

import base64
import importlib
import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

METRIC = "F1@0.5"
LABELS = ["Square", "Circle"]
#: evaluate.py also measures the variant's MODEL_URI route (a YOLO model exported to ONNX) on these scenes
ONNX_ROUTE = True
PIXEL_NOISE = 16.0  # standard deviation, in 0..255 units
TILT = math.radians(15)
GAP = -3  # objects may touch and overlap by this many pixels


def _contrasting(background: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
    return tuple((c + rng.randint(45, 211)) % 256 for c in background)


def _free(box: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]]) -> bool:
    x1, y1, x2, y2 = box
    return all(x2 + GAP < a or a2 + GAP < x1 or y2 + GAP < b or b2 + GAP < y1 for a, b, a2, b2 in taken)


def _object(draw: ImageDraw.ImageDraw, label: str, box: tuple[int, int, int, int], ink,
            rng: random.Random) -> tuple[int, int, int, int]:
    """Draw one object inside ``box``; its tight box, the one an annotator draws around it."""
    x1, y1, x2, y2 = box
    if label == "Circle":
        half = round((y2 - y1) * rng.uniform(0.85, 1.0) / 2)
        cy = (y1 + y2) // 2
        draw.ellipse((x1, cy - half, x2 - 1, cy + half - 1), fill=ink)
        return x1, cy - half, x2, cy + half
    angle, cx, cy, half = rng.uniform(-TILT, TILT), (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    half /= abs(math.cos(angle)) + abs(math.sin(angle))  # the tilted square fits the box
    corners = [(cx + half * (dx * math.cos(angle) - dy * math.sin(angle)),
                cy + half * (dx * math.sin(angle) + dy * math.cos(angle))) for dx, dy in ((-1, -1), (1, -1), (1, 1),
                                                                                          (-1, 1))]
    draw.polygon(corners, fill=ink)
    return box


def scene(rng: random.Random) -> tuple[Image.Image, list[tuple[str, tuple[int, int, int, int]]]]:
    width, height = rng.randint(80, 160), rng.randint(80, 160)
    background = tuple(rng.randint(0, 255) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    objects, taken = [], []
    for _ in range(rng.randint(1, 5)):
        for _attempt in range(20):
            side = rng.randint(10, 34)
            x, y = rng.randint(2, width - side - 2), rng.randint(2, height - side - 2)
            box = (x, y, x + side, y + side)
            if _free(box, taken):
                label = rng.choice(LABELS)
                objects.append((label, _object(draw, label, box, _contrasting(background, rng), rng)))
                taken.append(box)
                break
    for _ in range(rng.randint(0, 3)):  # distractors: lines, specks and triangles, not objects
        ink = _contrasting(background, rng)
        x, y = rng.randint(0, width - 1), rng.randint(0, height - 1)
        kind = rng.random()
        if kind < 0.4:
            draw.line((x, y, x + rng.randint(-40, 40), y + rng.randint(-3, 3)), fill=ink, width=1)
        elif kind < 0.7:
            draw.rectangle((x, y, x + 2, y + 2), fill=ink)
        else:
            side = rng.randint(10, 30)
            draw.polygon([(x, y + side), (x + side, y + side), (x + side // 2, y)], fill=ink)
    pixels = np.asarray(image, dtype=np.float64) + np.random.default_rng(rng.randint(0, 2**31)).normal(
        0.0, PIXEL_NOISE, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _result(objects, width: int, height: int) -> list[dict]:
    return [{"id": f"b{i}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
             "original_width": width, "original_height": height, "image_rotation": 0,
             "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                       "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]}}
            for i, (label, (x1, y1, x2, y2)) in enumerate(objects)]


def make(n_train: int, n_test: int, seed: int) -> tuple[list, list]:
    """``n_train`` annotated tasks and ``n_test`` held-out ones with their ``(width, height, objects)`` truth."""
    rng = random.Random(seed)
    pool, test = [], []
    for index in range(n_train + n_test):
        image, objects = scene(rng)
        data = {"image": _data_uri(image)}
        if index < n_train:
            pool.append((data, _result(objects, image.width, image.height)))
        else:
            test.append((data, (image.width, image.height, objects)))
    return pool, test


def _predicted(prediction: dict, width: int, height: int) -> list[tuple[str, float, tuple]]:
    found = []
    for item in prediction.get("result") or []:
        v = item["value"]
        corners = (v["x"] * width / 100, v["y"] * height / 100, (v["x"] + v["width"]) * width / 100,
                   (v["y"] + v["height"]) * height / 100)
        found.append((v["rectanglelabels"][0], float(item.get("score", 1.0)), corners))
    return found


def score(predictions: list[dict], truths: list) -> dict:
    boxes = importlib.import_module("lsbackend.boxes")  # the baked runtime's IoU, matching and AP
    per_label = {label: {"scores": [], "hits": [], "total": 0} for label in LABELS}
    for prediction, (width, height, objects) in zip(predictions, truths, strict=True):
        found = _predicted(prediction, width, height)
        for label, tally in per_label.items():
            mine = [(s, c) for name, s, c in found if name == label]
            true = np.array([c for name, c in objects if name == label], dtype=float).reshape(-1, 4)
            scores = np.array([s for s, _ in mine])
            tally["hits"] += list(boxes.match(np.array([c for _, c in mine]).reshape(-1, 4), scores, true))
            tally["scores"] += list(scores)
            tally["total"] += len(true)
    hits = sum(sum(t["hits"]) for t in per_label.values())
    returned = sum(len(t["hits"]) for t in per_label.values())
    total = sum(t["total"] for t in per_label.values())
    precision = hits / returned if returned else 0.0
    recall = hits / total if total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    aps = [boxes.average_precision(np.array(t["scores"]), np.array(t["hits"], dtype=bool), t["total"])
           for t in per_label.values() if t["total"]]
    return {"F1@0.5": f1, "precision@0.5": precision, "recall@0.5": recall, "mAP@0.5": float(np.mean(aps))}
