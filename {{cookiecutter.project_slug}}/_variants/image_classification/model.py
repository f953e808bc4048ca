"""Your model: image classification with colour and gradient features and logistic regression.

This is the one file meant for you to edit. The runtime (``lsbackend``) calls:

- ``predict(tasks)`` for pre-annotations: return one prediction per task;
- ``fit(annotations)`` when training runs: return a dict, which is saved and
  handed back to every later model object as ``self.train_output``.

``self.control`` / ``self.object_tag`` are the ``<Choices>`` and ``<Image>`` tags
of the project's labeling config; ``self.labels`` are its choices. With
``<Choices choice="multiple">`` the model learns one yes/no classifier per label
(one-vs-rest) and predicts every label whose probability reaches 0.5 (or the
project's ``score_threshold`` extra param).

The features need no pretrained weights or downloads: per-channel colour
histograms, a tiny colour thumbnail and histograms of gradient orientations
(the idea behind HOG), so the model learns colours and simple shapes from a
few dozen annotations. For photos of cats and dogs, swap ``image_features``
for embeddings of a pretrained network and keep the rest.

Images are loaded and decoded by ``self.task_images`` (URLs, Label Studio paths, cloud URIs, data
URIs, local files; EXIF orientation, pixel limits). A task whose image cannot be loaded gets an
empty prediction with an ``error`` field; the other tasks are predicted.

Interactive pre-annotation: a classification has one answer per image, so an
interactive call (opening a task, a box or keypoint drawn with a smart tool)
gets the same prediction as "Retrieve predictions"; the regions do not change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lsbackend import LabelStudioMLBase
from lsbackend.images import UprightImage
from lsbackend.media import MediaError
from lsbackend.onnx_model import OnnxImageClassifier

SIDE = 32  # images are compared at SIDE x SIDE pixels
COLOUR_BINS = 8
ORIENTATION_BINS = 9
THUMBNAIL = 4


def _orientation_histogram(gray: np.ndarray) -> np.ndarray:
    """Gradient-magnitude-weighted histogram of edge orientations (0..180 degrees), L1-normalised."""
    gy, gx = np.gradient(gray)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(int), ORIENTATION_BINS - 1)
    histogram = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=ORIENTATION_BINS)
    return histogram / (histogram.sum() + 1e-6)


def image_features(image: Image.Image) -> np.ndarray:
    """A fixed-length vector describing colours and edge directions of the image."""
    image = image.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float64) / 255.0  # SIDE x SIDE x 3
    colour = [
        np.histogram(pixels[..., c], bins=COLOUR_BINS, range=(0.0, 1.0))[0] / pixels[..., c].size for c in range(3)
    ]
    thumbnail = np.asarray(image.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), dtype=np.float64) / 255.0
    gray = pixels @ np.array([0.299, 0.587, 0.114])
    half = gray.shape[0] // 2
    cells = [gray[:half, :half], gray[:half, half:], gray[half:, :half], gray[half:, half:]]
    edges = [_orientation_histogram(gray)] + [_orientation_histogram(cell) for cell in cells]
    return np.concatenate(colour + [thumbnail.ravel()] + edges)


class ImageClassifier(LabelStudioMLBase):
    """Classifies each task's image into one of the config's choices (or several, for multi-label)."""

    model_type = "image_classification"

    def setup(self) -> None:
        self.pipeline: Pipeline | None = self.train_output.get("pipeline")
        self.decode_side = 2 * SIDE  # images are decoded this small (JPEGs at reduced size, much faster)
        if isinstance(self.pipeline, OnnxImageClassifier):  # a pretrained network (MODEL_URI=...onnx)
            self.classes = self.pipeline.labels or self.labels
            self.decode_side = self.pipeline.side
        else:  # a multi-label pipeline answers per label index; a single-label one names its classes
            self.classes = self.train_output.get("classes") or (
                [str(c) for c in self.pipeline.classes_] if self.pipeline is not None else []
            )

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        """MODEL_URI: an ONNX network (``.onnx``), or a scikit-learn pipeline over ``image_features``
        saved with ``joblib.dump``. Training replaces either with a model of its own."""
        if path.suffix == ".onnx":
            return {"pipeline": OnnxImageClassifier(path)}  # labels and mean/std from its metadata
        pipeline = joblib.load(path)  # runs code from the file: point MODEL_URI only at files you trust
        if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
            raise ValueError(f"MODEL_URI holds a {type(pipeline).__name__}, not a fitted classifier with "
                             "predict_proba")
        return {"pipeline": pipeline}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        if self.pipeline is None or not self.known_labels(self.classes):
            self.task_references(tasks)  # a missing field still fails the request, by name
            # Not trained yet (or none of its labels left in the config): an empty result, and no downloads.
            return [self.prediction([]) for _ in tasks]
        # An interactive call keeps the decoded image for the annotator's next click on the task.
        pictures = self.task_images(tasks, self.decode_side, keep=context is not None)
        return self.predictions_for(tasks, pictures, self._classify)  # a broken image costs only its task

    def _classify(self, pictures: list[UprightImage]) -> list[dict]:
        images = [picture.image for picture in pictures]
        if isinstance(self.pipeline, OnnxImageClassifier):
            probabilities = self.pipeline.predict_images(images)
        else:
            probabilities = self.pipeline.predict_proba(np.stack([image_features(image) for image in images]))
        return self.choice_predictions(probabilities, self.classes)  # score_threshold, multi-label, aliases

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        labeled = self.labeled_annotations(annotations)  # (annotation, its labels); the others skipped, saying why
        pictures = self.annotation_images([annotation for annotation, _ in labeled], self.decode_side)
        failures = [f"task {annotation['task'].get('id')}: {picture}" for (annotation, _), picture
                    in zip(labeled, pictures, strict=True) if isinstance(picture, MediaError)]
        kept = [(found, picture) for (_, found), picture in zip(labeled, pictures, strict=True)
                if not isinstance(picture, MediaError)]  # a bad image costs its own annotation only
        features = [image_features(picture.image) for _, picture in kept]
        labels = [found for found, _ in kept]
        seen = sorted({label for found in labels for label in found})
        if len(seen) < 2:
            why = f"; {len(failures)} images failed to load, first: {failures[0]}" if failures else ""
            raise ValueError(f"training needs annotations with at least 2 different labels, got {seen}{why}")
        output = {"trained_on": len(labels), "skipped_images": failures[:20]}
        if self.multi_label:  # one yes/no classifier per label seen (a label on every image is learnt as constant)
            classes = [label for label in self.labels if label in seen]
            indicator = np.array([[label in found for label in classes] for found in labels], dtype=int)
            classifier = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=1.0))
            pipeline = make_pipeline(StandardScaler(), classifier).fit(np.stack(features), indicator)
            return {**output, "pipeline": pipeline, "classes": classes}
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        pipeline.fit(np.stack(features), [found[0] for found in labels])
        return {**output, "pipeline": pipeline}
