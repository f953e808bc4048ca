"""Seeded synthetic pictures of one shape each: Circle, Square or Triangle.

Drawn here with Pillow (no downloads) as small PNG data: URIs, the way a task
can carry an image inline. Not trivial on purpose: background and shape
colours are random (only contrast is kept), so colour says nothing about the
label; shapes have random size and position, squares and triangles lean by up
to 15 degrees and circles are slightly squashed; a thin line of a third colour crosses
many pictures; every pixel gets Gaussian noise; and 10% of the TRAINING labels
are replaced at random (the held-out truth stays clean).

The template's default config offers Cat / Dog / Other, so ``LABEL_CONFIG``
gives this benchmark's choices; ``evaluate.py`` bakes the variant with it, the
way a user passes ``label_config`` to cookiecutter.
"""

from __future__ import annotations

import base64
import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

METRIC = "accuracy"
LABELS = ["Circle", "Square", "Triangle"]
LABEL_NOISE = 0.10
SIDE = 32  # pixels; the model compares images at 32 x 32 anyway
SUPERSAMPLE = 2  # drawn at twice the size, then shrunk, for smooth edges
TILT = math.radians(15)  # squares and triangles lean up to this far either way
PIXEL_NOISE = 14.0  # standard deviation, in 0..255 units
CLUTTER_SHARE = 0.5  # pictures crossed by a distracting line

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="choice" toName="image" choice="single" showInLine="true">
""" + "".join(f'    <Choice value="{label}"/>\n' for label in LABELS) + """  </Choices>
</View>
"""


def _colours(rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Background, shape and clutter colours: random, but the shape stays visible against the background."""
    while True:
        background = tuple(rng.randint(0, 255) for _ in range(3))
        ink = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(a - b) for a, b in zip(background, ink, strict=True)) >= 180:
            return background, ink, tuple(rng.randint(0, 255) for _ in range(3))


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float) -> list[tuple[float, float]]:
    return [(cx + radius * math.cos(angle + 2 * math.pi * k / corners),
             cy + radius * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]


def picture(rng: random.Random, shape: str) -> Image.Image:
    """One noisy ``SIDE`` x ``SIDE`` picture of ``shape``."""
    big = SIDE * SUPERSAMPLE
    background, ink, clutter = _colours(rng)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.18, 0.36) * big  # circumradius; the shape stays fully inside
    cx, cy = rng.uniform(radius + 2, big - radius - 2), rng.uniform(radius + 2, big - radius - 2)
    if shape == "Circle":
        rx, ry = radius * 0.85, radius * 0.85 * rng.uniform(0.8, 1.0)  # about the square's area, slightly squashed
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=ink)
    elif shape == "Square":
        draw.polygon(_polygon(cx, cy, radius, 4, math.pi / 4 + rng.uniform(-TILT, TILT)), fill=ink)
    else:  # pointing up
        draw.polygon(_polygon(cx, cy, radius * 1.1, 3, -math.pi / 2 + rng.uniform(-TILT, TILT)), fill=ink)
    if rng.random() < CLUTTER_SHARE:
        ends = [(rng.uniform(0, big), rng.uniform(0, big)) for _ in range(2)]
        draw.line(ends, fill=clutter, width=SUPERSAMPLE * rng.randint(1, 2))
    pixels = np.asarray(image.resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, PIXEL_NOISE, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def example(rng: random.Random) -> tuple[str, str]:
    """One picture as a data: URI and its true label."""
    label = rng.choice(LABELS)
    return data_uri(picture(rng, label)), label


def result(label: str) -> list[dict]:
    return [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def make(n_train: int, n_test: int, seed: int) -> tuple[list[tuple[dict, list[dict]]], list[tuple[dict, str]]]:
    """``n_train`` annotated tasks (with label noise) and ``n_test`` held-out ``(data, true label)`` pairs."""
    rng = random.Random(seed)
    train = []
    for _ in range(n_train):
        uri, label = example(rng)
        if rng.random() < LABEL_NOISE:
            label = rng.choice(LABELS)
        train.append(({"image": uri}, result(label)))
    test = [({"image": uri}, label) for uri, label in (example(rng) for _ in range(n_test))]
    return train, test


def score(predictions: list[dict], truths: list[str]) -> dict[str, float]:
    """Accuracy; an empty prediction (untrained model, or an image that failed to load) counts as wrong."""
    chosen = [p["result"][0]["value"]["choices"][0] if p["result"] else None for p in predictions]
    correct = sum(c == t for c, t in zip(chosen, truths, strict=True))
    return {"accuracy": correct / len(truths)}
