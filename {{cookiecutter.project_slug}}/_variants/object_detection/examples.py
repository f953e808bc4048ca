"""Labeled examples for the tests: small generated pictures with squares and circles, boxes in Label Studio's format.

``training_set()`` and ``holdout()`` return ``(task data, annotation result)`` and
``(task data, expected)`` pairs, so the generic server tests can train any variant.
Each picture (96x64, not square) has two or three objects on a plain background,
one per quadrant, some with a thin line as a distractor, and noise. ``expected``
(and ``predicted_label`` of a prediction) is the sorted tuple of ``(label, quadrant)``
of the objects: it says what was found and roughly where, without asking for pixels.
"""

from __future__ import annotations

import base64
import functools
import io
import random

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 96, 64
LABELS = ("Square", "Circle")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(image: Image.Image) -> str:
    """The image as a PNG data: URI, the way a task can carry an image inline."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def box_item(corners: tuple[float, float, float, float], label: str, width: int = WIDTH, height: int = HEIGHT,
             from_name: str = "label", to_name: str = "image", item_id: str = "b0") -> dict:
    """An annotated box as Label Studio 1.23 stores it: percent top-left corner and size, image size beside."""
    x1, y1, x2, y2 = corners
    return {"original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                      "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]},
            "id": item_id, "from_name": from_name, "to_name": to_name, "type": "rectanglelabels", "origin": "manual"}


def _noisy(image: Image.Image, rng: random.Random, amount: int = 8) -> Image.Image:
    pixels = image.load()
    for x in range(image.width):
        for y in range(image.height):
            pixels[x, y] = tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in pixels[x, y])
    return image


def scene(seed: int) -> tuple[Image.Image, list[tuple[str, str, tuple[int, int, int, int]]]]:
    """A picture and its objects as ``(label, quadrant, pixel corners)``."""
    image, objects = _scene(seed)
    return image.copy(), list(objects)


@functools.cache  # drawing the noise pixel by pixel costs ~80 ms a picture, and tests ask for the same ones often
def _scene(seed: int) -> tuple[Image.Image, list[tuple[str, str, tuple[int, int, int, int]]]]:
    rng = random.Random(seed)
    background = tuple(rng.randint(0, 255) for _ in range(3))
    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(image)
    quadrants = rng.sample(range(4), rng.choice((2, 3)))
    objects = []
    for q in quadrants:
        side = rng.randint(12, 20)
        left, top = (q % 2) * WIDTH // 2, (q // 2) * HEIGHT // 2
        x0, y0 = left + rng.randint(3, WIDTH // 2 - side - 3), top + rng.randint(3, HEIGHT // 2 - side - 3)
        label = rng.choice(LABELS)
        ink = tuple((c + 128 + rng.randint(-40, 40)) % 256 for c in background)
        (draw.rectangle if label == "Square" else draw.ellipse)((x0, y0, x0 + side - 1, y0 + side - 1), fill=ink)
        objects.append((label, QUADRANTS[q], (x0, y0, x0 + side, y0 + side)))
    free = [q for q in range(4) if q not in quadrants]
    if free and rng.random() < 0.7:  # a distractor: a thin line, which is neither label
        q = free[0]
        left, top = (q % 2) * WIDTH // 2 + 4, (q // 2) * HEIGHT // 2 + rng.randint(6, HEIGHT // 2 - 8)
        ink = tuple((c + 128 + rng.randint(-40, 40)) % 256 for c in background)
        draw.rectangle((left, top, left + rng.randint(20, WIDTH // 2 - 10), top + 1), fill=ink)
    return _noisy(image, rng), objects


def annotated(seed: int) -> tuple[dict, list[dict]]:
    image, objects = scene(seed)
    result = [box_item(corners, label, item_id=f"b{i}") for i, (label, _, corners) in enumerate(objects)]
    return {"image": data_uri(image)}, result


def training_set(count: int = 24) -> list[tuple[dict, list[dict]]]:
    return [annotated(100 + i) for i in range(count)]


def expected(seed: int) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((label, quadrant) for label, quadrant, _ in scene(seed)[1]))


def holdout() -> list[tuple[dict, tuple[tuple[str, str], ...]]]:
    return [({"image": data_uri(scene(900 + i)[0])}, expected(900 + i)) for i in range(4)]


def quadrant_of(item: dict) -> str:
    value = item["value"]
    right = value["x"] + value["width"] / 2 >= 50
    bottom = value["y"] + value["height"] / 2 >= 50
    return QUADRANTS[2 * bottom + right]


def predicted_label(prediction: dict) -> tuple[tuple[str, str], ...]:
    """What a prediction found: the sorted ``(label, quadrant)`` of its boxes (empty for none)."""
    return tuple(sorted((item["value"]["rectanglelabels"][0], quadrant_of(item)) for item in prediction["result"]))


#: The picture the interactive captures draw on: three squares alike (in slightly different colours) and a circle.
INTERACTIVE_OBJECTS = (("Square", (6, 6, 22, 22)), ("Square", (60, 8, 76, 24)), ("Square", (30, 40, 46, 56)),
                       ("Circle", (70, 40, 86, 56)))


def interactive_scene() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for (label, (x1, y1, x2, y2)), ink in zip(INTERACTIVE_OBJECTS, ((200, 220, 60), (190, 230, 70), (210, 210, 50),
                                                                   (200, 220, 60)), strict=True):
        (draw.rectangle if label == "Square" else draw.ellipse)((x1, y1, x2 - 1, y2 - 1), fill=ink)
    return _noisy(image, random.Random(7))


def uploads() -> dict[str, bytes]:
    """Files the interactive captures (tests/runtime/protocol/predict_interactive_*_detection.json) name."""
    return {"/data/upload/7/shapes.png": png_bytes(interactive_scene())}


def pixel_corners(item: dict) -> tuple[float, float, float, float]:
    """A result item's box in pixels of the interactive picture."""
    value = item["value"]
    x, y = value["x"] * WIDTH / 100, value["y"] * HEIGHT / 100
    return x, y, x + value["width"] * WIDTH / 100, y + value["height"] * HEIGHT / 100


def close_to(corners: tuple[float, ...], expected: tuple[float, ...], pixels: float = 2.0) -> bool:
    return all(abs(a - b) <= pixels for a, b in zip(corners, expected, strict=True))


def check_interactive(name: str, interactive: dict, batch: dict) -> None:
    """A smart box comes back labeled by the model (the capture drew it around a square with "Circle"
    selected) with the other two squares, and not the circle; a click on the circle (an alt-click on a
    square beside it) comes back as the circle's box, labeled Circle."""
    found = [(item["value"]["rectanglelabels"][0], pixel_corners(item)) for item in interactive["result"]]
    squares = [corners for label, corners in INTERACTIVE_OBJECTS if label == "Square"]
    if name.startswith("predict_interactive_rectangle"):
        assert found and found[0][0] == "Square" and close_to(found[0][1], squares[0], 0.01), (name, found)
        assert [label for label, _ in found] == ["Square"] * 3, (name, found)  # two more, not the circle
        assert all(close_to(corners, square) for corners, square in
                   zip(sorted(corners for _, corners in found[1:]), sorted(squares[1:]), strict=True)), (name, found)
    elif name.startswith("predict_interactive_keypoint"):
        [(label, corners)] = found
        assert label == "Circle" and close_to(corners, INTERACTIVE_OBJECTS[3][1]), (name, found)
        assert corners[0] <= 78 <= corners[2] and corners[1] <= 48 <= corners[3], (name, found)  # the click
    else:
        raise AssertionError(f"{name}: no check for this interactive capture")
    assert interactive["result"] != batch["result"], (name, interactive, batch)
