"""Boxes in Label Studio's units: percent of the displayed image <-> pixel corners (standard library only).

Label Studio stores a rectangle as its top-left corner, width and height in
percent of the image as the annotator saw it (EXIF orientation applied), with
``original_width``/``original_height`` in pixels beside it. Detectors think in
pixel corners ``[x1, y1, x2, y2]``. This module converts between the two and
reads annotated boxes defensively (one odd item costs only itself).

It imports no numpy: ``base.py`` uses it, and the training child imports the
runtime before it lowers its priority, so thread pools (numpy's BLAS) must not
start here. The arithmetic on many boxes is in ``boxes.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LabeledBox:
    """One annotated box: pixel corners in the image as displayed, and its config label."""

    label: str
    corners: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


def to_percent(corners: Sequence[float], width: int, height: int) -> dict:
    """Pixel corners -> Label Studio's ``x, y, width, height`` in percent, clipped to the image."""
    x1, y1, x2, y2 = (float(c) for c in corners)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return {"x": 100.0 * x1 / width, "y": 100.0 * y1 / height,
            "width": 100.0 * (x2 - x1) / width, "height": 100.0 * (y2 - y1) / height, "rotation": 0}


def from_percent(value: dict, width: float, height: float) -> tuple[float, float, float, float]:
    """Label Studio's percent ``value`` -> pixel corners; ``ValueError`` naming what is wrong with it."""
    numbers = {}
    for key in ("x", "y", "width", "height"):
        number = value.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError(f"box has no numeric {key!r} (got {number!r})")
        numbers[key] = float(number)
    if numbers["width"] <= 0 or numbers["height"] <= 0:
        raise ValueError(f"box is empty ({numbers['width']:g}% x {numbers['height']:g}%)")
    x1, y1 = max(numbers["x"], 0.0), max(numbers["y"], 0.0)
    x2, y2 = min(numbers["x"] + numbers["width"], 100.0), min(numbers["y"] + numbers["height"], 100.0)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box lies outside the image (x={numbers['x']:g}%, y={numbers['y']:g}%)")
    return (x1 * width / 100.0, y1 * height / 100.0, x2 * width / 100.0, y2 * height / 100.0)


def read_boxes(items: object, control: str, label_of: Callable[[object], str | None], width: float,
               height: float) -> tuple[list[LabeledBox], list[str]]:
    """The usable boxes among an annotation's result ``items`` for ``control``, and why others were left out.

    ``width``/``height`` are the pixel size of the image as displayed. Rotated boxes are skipped, not
    axis-aligned: the enclosing box of a rotated one is larger than the object, and would teach the model
    loose boxes. Labels go through ``label_of`` (aliases back to config labels; unknown ones are skipped).
    """
    found, problems = [], []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("from_name") != control:
            continue
        value = item.get("value")
        if not isinstance(value, dict):
            problems.append(f"box {item.get('id')!r} has no value")
            continue
        rotation = value.get("rotation") or 0
        if not isinstance(rotation, int | float) or (rotation % 360) not in (0, 0.0):
            problems.append(f"box {item.get('id')!r} is rotated ({rotation!r} degrees); only upright boxes train")
            continue
        labels = value.get("rectanglelabels")
        label = label_of(labels[0]) if isinstance(labels, list) and len(labels) == 1 else None
        if label is None:
            problems.append(f"box {item.get('id')!r} has no label of this config (rectanglelabels={labels!r})")
            continue
        try:
            found.append(LabeledBox(label, from_percent(value, width, height)))
        except ValueError as exc:
            problems.append(f"box {item.get('id')!r}: {exc}")
    return found, problems
