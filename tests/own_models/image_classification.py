"""A user's own model: image classification by colour, each label's mean colour learned from annotations."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageStat

from lsbackend import LabelStudioMLBase


def mean_colour(data: bytes) -> tuple[float, float, float]:
    with Image.open(io.BytesIO(data)) as image:
        return tuple(ImageStat.Stat(image.convert("RGB")).mean)


def distance(one: tuple[float, ...], other: tuple[float, ...]) -> float:
    return sum((a - b) ** 2 for a, b in zip(one, other, strict=True))


class ColourClassifier(LabelStudioMLBase):
    """An image gets the label whose learned colour is nearest to its own mean colour."""

    model_type = "image_classification"

    def setup(self) -> None:
        self.colours = {label: c for label, c in self.train_output.get("colours", {}).items() if label in self.labels}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        return self.predictions_for(tasks, self.media_many(tasks), lambda good: [self.classify(d) for d in good])

    def classify(self, data: bytes) -> dict:
        if not self.colours:
            return self.prediction([])
        colour = mean_colour(data)
        label = min(self.colours, key=lambda name: distance(colour, self.colours[name]))
        return self.prediction([self.result_item({"choices": [label]})])  # a rule has no score

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        seen: dict[str, list[tuple[float, float, float]]] = {}
        for annotation in annotations:
            labels = self.annotation_labels(annotation)
            try:
                colour = mean_colour(self.media(annotation.get("task", {})))
            except Exception as exc:  # noqa: BLE001 - an image that does not load costs only itself
                self.skip(annotation, f"its image does not load: {exc}")
                continue
            if len(labels) != 1:
                self.skip(annotation, "needs exactly one label")
                continue
            seen.setdefault(labels[0], []).append(colour)
        if len(seen) < 2:
            raise ValueError("colours need annotated images of at least two labels")
        return {"colours": {label: tuple(sum(c[i] for c in found) / len(found) for i in range(3))
                            for label, found in seen.items()}}
