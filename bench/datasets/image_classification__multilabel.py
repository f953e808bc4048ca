"""Seeded pictures holding one to three different shapes, for ``<Choices choice="multiple">``.

Measures the image variant baked with a multi-label config: every shape kind
in the picture (Circle, Square, Triangle) is a label. Drawn with Pillow (no
downloads) from the single-label generator's parts: random colours (colour
says nothing), each shape in its own quarter of the picture at a random size
and tilt, pixel noise, and 10% of the TRAINING annotations miss a shape or add
a wrong one (the held-out truth stays clean).
"""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

METRIC = "F1 (micro)"
VARIANT = "image_classification"
LABELS = ["Circle", "Square", "Triangle"]
LABEL_NOISE = 0.10


def _single():
    """The single-label generator (colours, polygons, noise), loaded by path like evaluate.py loads datasets."""
    spec = importlib.util.spec_from_file_location("bench_dataset_shapes", Path(__file__).with_name(
        "image_classification.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHAPES = _single()
LABEL_CONFIG = SHAPES.LABEL_CONFIG.replace('choice="single"', 'choice="multiple"')


def picture(rng: random.Random, shapes: list[str]) -> Image.Image:
    """A noisy picture with each of ``shapes`` in its own quarter."""
    big = SHAPES.SIDE * SHAPES.SUPERSAMPLE
    background, ink, _ = SHAPES._colours(rng)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    half = big / 2
    for shape, (qx, qy) in zip(shapes, rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], len(shapes)), strict=False):
        radius = rng.uniform(0.3, 0.42) * half
        cx, cy = qx * half + half / 2, qy * half + half / 2
        tilt = rng.uniform(-SHAPES.TILT, SHAPES.TILT)
        if shape == "Circle":
            draw.ellipse((cx - radius * 0.85, cy - radius * 0.85, cx + radius * 0.85, cy + radius * 0.85), fill=ink)
        elif shape == "Square":
            draw.polygon(SHAPES._polygon(cx, cy, radius, 4, math.pi / 4 + tilt), fill=ink)
        else:
            draw.polygon(SHAPES._polygon(cx, cy, radius * 1.1, 3, -math.pi / 2 + tilt), fill=ink)
    pixels = np.asarray(image.resize((SHAPES.SIDE, SHAPES.SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, SHAPES.PIXEL_NOISE, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))


def example(rng: random.Random) -> tuple[str, list[str]]:
    shapes = rng.sample(LABELS, rng.choice([1, 1, 2, 3]))
    return SHAPES.data_uri(picture(rng, shapes)), [s for s in LABELS if s in shapes]


def result(labels: list[str]) -> list[dict]:
    return [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": labels}}]


def make(n_train: int, n_test: int, seed: int) -> tuple[list[tuple[dict, list[dict]]], list[tuple[dict, list[str]]]]:
    """``n_train`` annotated pictures (with label noise) and ``n_test`` held-out ``(data, true shapes)`` pairs."""
    rng = random.Random(seed)
    train = []
    for _ in range(n_train):
        uri, labels = example(rng)
        if rng.random() < LABEL_NOISE:
            flipped = rng.choice(LABELS)  # a hurried annotator misses it, or adds it
            labels = [s for s in LABELS if (s in labels) != (s == flipped)] or labels
        train.append(({"image": uri}, result(labels)))
    test = [({"image": uri}, labels) for uri, labels in (example(rng) for _ in range(n_test))]
    return train, test


def score(predictions: list[dict], truths: list[list[str]]) -> dict[str, float]:
    """Micro-averaged F1 over (task, label) pairs, and the share of tasks whose label set is exactly right."""
    chosen = [set(p["result"][0]["value"]["choices"]) if p["result"] else set() for p in predictions]
    true_sets = [set(t) for t in truths]
    hits = sum(len(c & t) for c, t in zip(chosen, true_sets, strict=True))
    predicted, actual = sum(map(len, chosen)), sum(map(len, true_sets))
    f1 = 2 * hits / (predicted + actual) if predicted + actual else 1.0
    exact = sum(c == t for c, t in zip(chosen, true_sets, strict=True)) / len(truths)
    return {METRIC: f1, "exact match": exact}
