"""Labeled examples for the tests: small generated images, as data: URIs, with the captured config's choices.

``training_set()`` and ``holdout()`` return ``(task data, annotation result)``
pairs in Label Studio's format, so the generic server tests can train any
variant. The images are drawn here (no files, no network): reddish and bluish
pictures with a random shape of another shade, and noise, so the model must
learn colour rather than memorise pixels. ``shape_image`` draws circles and
squares in random colours for the shape test.
"""

from __future__ import annotations

import base64
import functools
import io
import random

from PIL import Image, ImageDraw

SIZE = 40
RED = [(200, 30, 30), (230, 60, 40), (170, 20, 50), (250, 90, 80), (190, 50, 20), (220, 20, 70), (160, 40, 40),
       (240, 40, 30)]
BLUE = [(30, 40, 200), (50, 80, 230), (20, 30, 160), (80, 110, 250), (40, 60, 190), (30, 90, 210), (50, 40, 170),
        (20, 70, 240)]
HOLDOUT = [((210, 45, 35), "Red"), ((35, 55, 215), "Blue"), ((180, 35, 60), "Red"), ((60, 95, 220), "Blue")]


def result(label: str, from_name: str = "choice", to_name: str = "image") -> list[dict]:
    return [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}]


def data_uri(image: Image.Image) -> str:
    """The image as a PNG data: URI, the way a task can carry an image inline."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _shade(colour: tuple[int, int, int], rng: random.Random, spread: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-spread, spread))) for c in colour)


def _noisy(image: Image.Image, rng: random.Random, amount: int = 12) -> Image.Image:
    pixels = image.load()
    for x in range(image.width):
        for y in range(image.height):
            pixels[x, y] = _shade(pixels[x, y], rng, amount)
    return image


def colour_image(colour: tuple[int, int, int], seed: int) -> Image.Image:
    """A picture dominated by ``colour``, with a random shape of another shade of it."""
    return _colour_image(colour, seed).copy()


@functools.cache  # drawing the noise pixel by pixel costs ~40 ms a picture, and tests ask for the same ones often
def _colour_image(colour: tuple[int, int, int], seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE), _shade(colour, rng, 20))
    x0, y0 = rng.randint(0, SIZE // 2), rng.randint(0, SIZE // 2)
    box = (x0, y0, x0 + rng.randint(8, SIZE // 2), y0 + rng.randint(8, SIZE // 2))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=_shade(colour, rng, 45))
    return _noisy(image, rng)


def shape_image(shape: str, seed: int) -> Image.Image:
    """A filled circle or square in a random colour on a random background, at a random place and size."""
    return _shape_image(shape, seed).copy()


@functools.cache
def _shape_image(shape: str, seed: int) -> Image.Image:
    rng = random.Random(seed)
    background = tuple(rng.randint(0, 255) for _ in range(3))
    ink = tuple((c + 128 + rng.randint(-40, 40)) % 256 for c in background)  # always contrasting
    image = Image.new("RGB", (SIZE, SIZE), background)
    side = rng.randint(18, 30)
    x0, y0 = rng.randint(2, SIZE - side - 2), rng.randint(2, SIZE - side - 2)
    box = (x0, y0, x0 + side, y0 + side)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "Circle" else draw.rectangle)(box, fill=ink)
    return _noisy(image, rng, 6)


def training_set() -> list[tuple[dict, list[dict]]]:
    pairs = [(colour_image(c, 100 + i), "Red") for i, c in enumerate(RED)]
    pairs += [(colour_image(c, 200 + i), "Blue") for i, c in enumerate(BLUE)]
    pairs = [p for pair in zip(pairs[: len(RED)], pairs[len(RED) :], strict=True) for p in pair]  # interleave labels
    return [({"image": data_uri(image)}, result(label)) for image, label in pairs]


def holdout() -> list[tuple[dict, str]]:
    return [({"image": data_uri(colour_image(c, 900 + i))}, label) for i, (c, label) in enumerate(HOLDOUT)]


def predicted_label(prediction: dict) -> str | None:
    """The label a prediction chose, or None for an empty result."""
    result = prediction["result"]
    return result[0]["value"]["choices"][0] if result else None


def uploads() -> dict[str, bytes]:
    """Files the interactive captures (tests/runtime/protocol/predict_interactive_*) name on Label Studio."""
    return {"/data/upload/7/red.png": png_bytes(colour_image(RED[0], 950))}


def check_interactive(name: str, interactive: dict, batch: dict) -> None:
    """A classification has one answer per task: an interactive call gets the batch call's prediction."""
    assert interactive["result"] and interactive["result"] == batch["result"], (name, interactive, batch)
