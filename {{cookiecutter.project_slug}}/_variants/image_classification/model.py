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

Images are loaded by ``lsbackend.media`` through ``self.media_resolver`` (URLs, Label Studio paths, cloud
URIs, data URIs, local files). A task whose image cannot be loaded gets an
empty prediction with an ``error`` field; the other tasks are predicted.

Interactive pre-annotation: a classification has one answer per image, so an
interactive call (opening a task, a box or keypoint drawn with a smart tool)
gets the same prediction as "Retrieve predictions"; the regions do not change it.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lsbackend import LabelStudioMLBase, TaskDataError
from lsbackend.media import MediaError
from lsbackend.onnx_model import OnnxClassifier

log = logging.getLogger(__name__)
# Pillow warns about images between its limit and twice it; decode_image refuses those with a clear error instead.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SIDE = 32  # images are compared at SIDE x SIDE pixels
DEFAULT_NETWORK_SIDE = 224  # for an ONNX network whose input size is not fixed
COLOUR_BINS = 8
ORIENTATION_BINS = 9
THUMBNAIL = 4


def decode_image(data: bytes, max_pixels: int, side: int = SIDE) -> Image.Image:
    """Decode bytes into a small RGB image, or ``MediaError`` if they are not an image or too large.

    The size is read from the header first: a small file can declare a huge
    image (a 12000x12000 PNG of one colour is a few hundred KB and 576 MB decoded),
    so images over ``max_pixels`` (MEDIA_MAX_MEGAPIXELS) are refused before decoding.
    """
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise MediaError(
                f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP), over the "
                f"{max_pixels / 1e6:g} MP limit; resize it or raise MEDIA_MAX_MEGAPIXELS"
            )
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced size, much faster
        return image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    except Image.DecompressionBombError as exc:  # Pillow's own check, which follows MEDIA_MAX_MEGAPIXELS
        raise MediaError(f"image refused: {exc}; resize it or raise MEDIA_MAX_MEGAPIXELS") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"not an image Pillow can read ({len(data)} bytes): {exc}") from None


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


def network_input(images: list[Image.Image], network: OnnxClassifier) -> np.ndarray:
    """Images as the float32 batch a vision network takes: [N, 3, H, W], RGB scaled to 0..1, then
    normalised with the model's ``mean``/``std`` metadata when it has them (e.g. ImageNet's)."""
    height, width = (d if isinstance(d, int) else DEFAULT_NETWORK_SIDE for d in network.input_shape[2:4])
    batch = np.stack([np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
                      for image in images]) / 255.0
    if network.mean is not None and network.std is not None:
        batch = (batch - network.mean) / network.std
    return batch.transpose(0, 3, 1, 2)


class ImageClassifier(LabelStudioMLBase):
    """Classifies each task's image into one of the config's choices (or several, for multi-label)."""

    model_type = "image_classification"

    def setup(self) -> None:
        # Pillow's own decompression-bomb limit (refusal at twice it) follows ours, for any decode path.
        Image.MAX_IMAGE_PIXELS = self.media_resolver.max_pixels
        self.pipeline: Pipeline | None = self.train_output.get("pipeline")
        self.decode_side = SIDE
        if isinstance(self.pipeline, OnnxClassifier):  # a pretrained network (MODEL_URI=...onnx)
            self.classes = self.pipeline.labels or self.labels
            sides = [d for d in self.pipeline.input_shape[2:4] if isinstance(d, int)]
            self.decode_side = max(sides, default=DEFAULT_NETWORK_SIDE)
        else:  # a multi-label pipeline answers per label index; a single-label one names its classes
            self.classes = self.train_output.get("classes") or (
                [str(c) for c in self.pipeline.classes_] if self.pipeline is not None else []
            )
        # Only labels still in the config may be predicted (the config can change).
        self.allowed = np.array([label in self.labels for label in self.classes], dtype=bool)

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        """MODEL_URI: an ONNX network (``.onnx``), or a scikit-learn pipeline over ``image_features``
        saved with ``joblib.dump``. Training replaces either with a model of its own."""
        if path.suffix == ".onnx":
            network = OnnxClassifier(path)
            if len(network.input_shape) != 4:
                raise ValueError("the ONNX model needs an image input [batch, 3, height, width], "
                                 f"found shape {network.input_shape}")
            return {"pipeline": network}
        pipeline = joblib.load(path)  # runs code from the file: point MODEL_URI only at files you trust
        if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
            raise ValueError(f"MODEL_URI holds a {type(pipeline).__name__}, not a fitted classifier with "
                             "predict_proba")
        return {"pipeline": pipeline}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        references = [self._reference(task) for task in tasks]  # a missing field fails the request, by name
        if self.pipeline is None or not self.allowed.any():
            # Not trained yet: an empty result rather than a made-up label, and no downloads.
            return [self.prediction([]) for _ in tasks]
        if context is not None and len(tasks) == 1:  # interactive: the annotator waits, and clicks again
            loaded = [self._kept_image(tasks[0], references[0])]
        else:
            loaded = self._load_images(tasks, references)
        # One task's broken image must not cost the others their predictions.
        return self.predictions_for(tasks, loaded, self._classify)

    def _kept_image(self, task: dict, reference: str) -> Image.Image | MediaError:
        """The task's decoded image, kept in ``task_cache`` for the next interactive call on it (a failure is not)."""
        def load() -> Image.Image:
            [item] = self._load_images([task], [reference])
            if isinstance(item, MediaError):
                raise item
            return item

        try:
            return self.task_cache.get_or_compute(("image", reference, self.decode_side), load)
        except MediaError as exc:
            return exc

    def _reference(self, task: dict) -> str:
        reference = self.task_value(task)
        if not isinstance(reference, str):
            raise TaskDataError(task, self.object_tag.data_key or "", "has no image URL or path in")
        return reference

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        chosen = []
        for annotation in annotations:
            found = self._chosen_labels(annotation)
            if not found:
                self.skip(annotation, f"chooses nothing of <Choices name={self.control.name!r}>")
            else:
                chosen.append((annotation, found))
        tasks = [a["task"] for a, _ in chosen]
        loaded = self._load_images(tasks, [self._stored_reference(t) for t in tasks])
        features, labels, failures = [], [], []
        for (annotation, found), item in zip(chosen, loaded, strict=True):
            if isinstance(item, MediaError):  # one bad image costs its own annotation, never the training
                failures.append(f"task {annotation['task'].get('id')}: {item}")
                self.skip(annotation, f"image not loaded: {item}")
                continue
            features.append(image_features(item))
            labels.append(found)
        for failure in failures:
            log.warning("training skips %s", failure)
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

    # --- helpers ----------------------------------------------------------
    def _chosen_labels(self, annotation: dict) -> list[str]:
        return self.annotation_labels(annotation)  # only this config's labels, aliases mapped back

    def _stored_reference(self, task: dict) -> Any:
        """What a recorded task holds in the image field; anything but a usable string fails as that
        task's ``MediaError`` when it is fetched."""
        try:
            return self.task_value(task)
        except TaskDataError:
            return None

    def _load_images(self, tasks: list[dict], references: list[Any]) -> list[Image.Image | MediaError]:
        """Each task's decoded image, or the ``MediaError`` that says why it could not be loaded."""
        resolver = self.media_resolver  # LABEL_STUDIO_URL, its key, LOCAL_FILES_ROOT, limits
        fetched = resolver.fetch_many((ref, task.get("id")) for ref, task in zip(references, tasks, strict=True))
        loaded: list[Image.Image | MediaError] = []
        for item in fetched:
            if isinstance(item, MediaError):
                loaded.append(item)
                continue
            try:
                loaded.append(decode_image(item, resolver.max_pixels, self.decode_side))
            except MediaError as exc:
                loaded.append(exc)
        return loaded

    def _classify(self, images: list[Image.Image]) -> list[dict]:
        assert self.pipeline is not None
        if isinstance(self.pipeline, OnnxClassifier):
            probabilities = self.pipeline.predict_proba(network_input(images, self.pipeline))
        else:
            probabilities = self.pipeline.predict_proba(np.stack([image_features(image) for image in images]))
        if self.multi_label:
            return [self.multi_label_prediction(self.classes, row) for row in probabilities.tolist()]
        probabilities[:, ~self.allowed] = -1.0
        best = probabilities.argmax(axis=1)
        scores = probabilities[np.arange(len(images)), best]
        classes = self.classes
        threshold = self.score_threshold  # extra_params from Label Studio's Connect dialog
        return [
            self.prediction([self.choice_result(str(classes[i]), score)] if score >= threshold else [], score)
            for i, score in zip(best, scores.tolist(), strict=True)
        ]
