"""A user's own model: object detection by rules. Blobs that stand out from the background are objects;
the label is the one whose learned fill (object pixels / box area: 1 for a square, 0.79 for a circle) is nearest."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from lsbackend import LabelStudioMLBase

MIN_PIXELS = 30  # smaller blobs (noise, thin lines) are no objects


def foreground(data: bytes) -> np.ndarray:
    """Pixels far from the image's median colour, the background."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    return np.linalg.norm(pixels - background, axis=2) > 60


def fill(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


class BlobDetector(LabelStudioMLBase):
    """Boxes the blobs of each image and labels each by its fill."""

    model_type = "object_detection"

    def setup(self) -> None:
        self.fills = {label: f for label, f in self.train_output.get("fills", {}).items() if label in self.labels}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        return self.predictions_for(tasks, self.media_many(tasks), lambda good: [self.detect(d) for d in good])

    def detect(self, data: bytes) -> dict:
        if not self.fills:
            return self.prediction([])
        mask = foreground(data)
        blobs, _ = ndimage.label(mask)
        boxes = []
        for region in ndimage.find_objects(blobs):
            ratio = fill(mask[region])
            if mask[region].sum() < MIN_PIXELS or min(mask[region].shape) < 4:
                continue
            label = min(self.fills, key=lambda name: abs(self.fills[name] - ratio))
            corners = (region[1].start, region[0].start, region[1].stop, region[0].stop)
            score = max(0.0, 1.0 - abs(self.fills[label] - ratio))
            boxes.append(self.box_result(corners, mask.shape[1], mask.shape[0], label, score))
        return self.prediction(boxes, min((b["score"] for b in boxes), default=0.0))

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        seen: dict[str, list[float]] = {}
        for annotation in annotations:
            try:
                mask = foreground(self.media(annotation.get("task", {})))
            except Exception as exc:  # noqa: BLE001 - an image that does not load costs only itself
                self.skip(annotation, f"its image does not load: {exc}")
                continue
            height, width = mask.shape
            for value in self.annotation_values(annotation):
                label = self.label_of((value.get("rectanglelabels") or [None])[0])
                try:
                    x, y, w, h = (float(value[k]) / 100 for k in ("x", "y", "width", "height"))
                except (KeyError, TypeError, ValueError):
                    label = None
                if label is None or value.get("rotation", 0) or w <= 0 or h <= 0:
                    self.skip(annotation, "a box needs a label of the config, a size and no rotation")
                    continue
                box = mask[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)]
                seen.setdefault(label, []).append(fill(box))
        if not seen:
            raise ValueError("no box to learn from: annotate at least one object")
        return {"fills": {label: sum(found) / len(found) for label, found in seen.items()}}
