"""Your model: object detection, drawing a labeled box around each object in an image.

This is the one file meant for you to edit. The runtime (``lsbackend``) calls:

- ``predict(tasks)`` for pre-annotations: one prediction per task, a ``rectanglelabels`` item per box;
- ``fit(annotations)`` when training runs: return a dict, which is saved and
  handed back to every later model object as ``self.train_output``.

Two detectors, one interface:

- **Trainable, offline** (the default): region proposals are the connected blobs that stand out from
  the image's background colour, at several contrast thresholds (``scipy.ndimage``); a random forest
  classifies each proposal's crop into one of the config's labels or "background"; overlapping
  detections are suppressed. It learns from a few dozen annotated images of objects on a clean
  background (documents, parts on a belt, shapes). It cannot find objects in cluttered natural photos:
  bring your own detector for those.
- **Your YOLO model** exported to ONNX and named by ``MODEL_URI`` (``load_pretrained``). Training then
  learns, per label, the score threshold that maximises F1 at IoU 0.5 on the annotated images.

Boxes go out in Label Studio's format (percent of the image as displayed, EXIF orientation applied),
through ``self.box_result``. Thresholds, in order: the ``score_threshold`` extra param, the control's
``model_score_threshold``, the per-label thresholds training learnt, the detector's default.

Interactive pre-annotation (``smart="true"`` tools, ``predict`` with a ``context``), no weights needed:

- a box drawn with the smart RectangleLabels tool comes back labeled by the model (the trained
  classifier on its crop; a YOLO model's best-overlapping box), with every region that looks like it
  ("find more like this", by normalised cross-correlation) proposed with the same label;
- a click with a smart KeyPointLabels tool comes back as the box of the object under it (the connected
  blob that stands out from the background), labeled the same way; alt-click marks an object to leave out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier

from lsbackend import LabelStudioMLBase
from lsbackend.box_search import blob_boxes, similar_regions
from lsbackend.box_units import LabeledBox
from lsbackend.boxes import best_threshold, iou, match, nms
from lsbackend.images import UprightImage
from lsbackend.interaction import Interaction, Region
from lsbackend.media import MediaError
from lsbackend.yolo_onnx import YoloDetector

log = logging.getLogger(__name__)

BACKGROUND = "__background__"
WORK_SIDE = 256  # the trainable detector looks at images at most this large
CONTRAST = (0.1, 0.2, 0.35)  # colour distance (0..1) from the background that makes a pixel foreground
MIN_SIDE = 3  # proposals narrower than this many working pixels are noise
POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.3  # a proposal is its object's example above, background below
MASK_SIDE = 6  # the foreground shape inside a box, at this many cells a side
DEFAULT_SCORE = {"trainable": 0.5, "yolo": 0.25}  # ultralytics' own predict default is 0.25
CALIBRATION_FLOOR = 0.01  # YOLO detections scoring this or more are candidates when learning thresholds
BLOB_CONTRAST = CONTRAST[1]  # a click's object: the pixels at least this far from the background colour
ANNOTATOR_SCORE = 1.0  # the score of a label the annotator gave and no model could judge


# --- the trainable detector: proposals and crop features --------------------------------------------------------
def background_colour(pixels: np.ndarray) -> np.ndarray:
    """The image's background colour, taken as the median of its border pixels."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def contrast_map(pixels: np.ndarray) -> np.ndarray:
    """How far each pixel's colour is from the background, 0..1."""
    return np.linalg.norm(pixels - background_colour(pixels), axis=2) / np.sqrt(3.0)


def proposals(contrast: np.ndarray) -> np.ndarray:
    """Candidate boxes [N, 4] (working pixels, x1 y1 x2 y2): connected foreground blobs at each threshold."""
    found = []
    for level in CONTRAST:
        mask = ndimage.binary_opening(contrast > level)  # drops single noisy pixels
        labeled, _ = ndimage.label(mask)
        for rows, cols in filter(None, ndimage.find_objects(labeled)):
            if cols.stop - cols.start >= MIN_SIDE and rows.stop - rows.start >= MIN_SIDE:
                found.append((cols.start, rows.start, cols.stop, rows.stop))
    if not found:
        return np.zeros((0, 4))
    unique = np.unique(np.array(found, dtype=np.float64), axis=0)
    return unique[nms(unique, -np.arange(len(unique)), iou_threshold=0.95)]


def cell_means(mask: np.ndarray, side: int) -> np.ndarray:
    """The share of set pixels in each cell of a ``side`` x ``side`` grid over the mask, row by row."""
    row_cells, col_cells = (np.array_split(np.arange(n), side) for n in mask.shape)
    sums = np.add.reduceat(np.add.reduceat(mask.astype(np.int64), [r[0] for r in row_cells], axis=0),
                           [c[0] for c in col_cells], axis=1)
    return (sums / np.outer([len(r) for r in row_cells], [len(c) for c in col_cells])).ravel()


def crop_features(pixels: np.ndarray, contrast: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """A fixed-length description of one box: its shape, colours, size and how it stands out."""
    height, width = contrast.shape
    x1, y1, x2, y2 = (int(round(c)) for c in corners)
    x1, y1 = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    crop, inside = pixels[y1:y2, x1:x2], contrast[y1:y2, x1:x2]
    foreground = inside > CONTRAST[0]
    shape = (cell_means(foreground, MASK_SIDE) if min(foreground.shape) >= MASK_SIDE
             else np.full(MASK_SIDE * MASK_SIDE, foreground.mean()))
    ink = crop[foreground] if foreground.any() else crop.reshape(-1, 3)
    edge = np.concatenate([foreground[0], foreground[-1], foreground[:, 0], foreground[:, -1]]).mean()
    margin = contrast[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2]
    geometry = [(x2 - x1) / width, (y2 - y1) / height, np.log((x2 - x1) / (y2 - y1)), foreground.mean(), edge,
                inside.mean(), (margin > CONTRAST[0]).mean() - foreground.mean() * inside.size / margin.size]
    return np.concatenate([shape, ink.mean(axis=0), ink.std(axis=0), geometry])


class TrainableDetector:
    """Proposals + a random forest over crop features, with a background class."""

    def __init__(self, forest: RandomForestClassifier) -> None:
        self.forest = forest

    @staticmethod
    def examples(picture: UprightImage, truth: list[LabeledBox]) -> tuple[list[np.ndarray], list[str]]:
        """Training rows from one annotated image: its boxes, the proposals that hit them, the ones that miss."""
        pixels = np.asarray(picture.image, dtype=np.float64) / 255.0
        contrast = contrast_map(pixels)
        boxes = np.array([b.corners for b in truth]).reshape(-1, 4) * picture.scale
        candidates = proposals(contrast)
        overlaps = iou(candidates, boxes) if len(boxes) else np.zeros((len(candidates), 0))
        rows = [crop_features(pixels, contrast, box) for box in boxes]
        labels = [b.label for b in truth]
        for candidate, overlap in zip(candidates, overlaps, strict=True):
            best = int(overlap.argmax()) if overlap.size else -1
            if best >= 0 and overlap[best] >= POSITIVE_IOU:
                rows.append(crop_features(pixels, contrast, candidate))
                labels.append(truth[best].label)
            elif best < 0 or overlap[best] < NEGATIVE_IOU:
                rows.append(crop_features(pixels, contrast, candidate))
                labels.append(BACKGROUND)
        return rows, labels

    @classmethod
    def fit(cls, rows: list[np.ndarray], labels: list[str]) -> TrainableDetector:
        forest = RandomForestClassifier(n_estimators=200, min_samples_leaf=1, class_weight="balanced",
                                        random_state=0, n_jobs=1)
        return cls(forest.fit(np.stack(rows), labels))

    def detect(self, pictures: list[UprightImage]) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Per picture: boxes (displayed pixels), scores and labels, each proposal's best non-background class.

        One forest call scores every proposal of the batch: a call costs a pass over every tree, whatever
        the number of rows."""
        found, rows = [], []
        for picture in pictures:
            pixels = np.asarray(picture.image, dtype=np.float64) / 255.0
            contrast = contrast_map(pixels)
            found.append(proposals(contrast) if self.objects else np.zeros((0, 4)))
            rows += [crop_features(pixels, contrast, box) for box in found[-1]]
        scored = self._probabilities(np.stack(rows)) if rows else np.zeros((0, len(self.forest.classes_)))
        per_picture = np.split(scored, np.cumsum([len(boxes) for boxes in found])[:-1]) if found else []
        return [self._best(boxes, probabilities, picture.scale)
                for boxes, probabilities, picture in zip(found, per_picture, pictures, strict=True)]

    @property
    def objects(self) -> list[int]:
        """The forest's classes that are labels (every class but background)."""
        return [i for i, c in enumerate(self.forest.classes_) if c != BACKGROUND]

    def _best(self, boxes: np.ndarray, probabilities: np.ndarray,
              scale: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Each box's likeliest label and its score, one box per object (overlaps suppressed, whatever the class)."""
        if not len(boxes):
            return np.zeros((0, 4)), np.zeros(0), []
        best = np.array(self.objects)[probabilities[:, self.objects].argmax(axis=1)]
        scores = probabilities[np.arange(len(boxes)), best]
        kept = nms(boxes, scores)
        return boxes[kept] / scale, scores[kept], [str(self.forest.classes_[i]) for i in best[kept]]

    def classify(self, pixels: np.ndarray, box: np.ndarray) -> tuple[str, float] | None:
        """The likeliest object label of one box (working pixels) and its score; None before any label is learnt."""
        if not self.objects:
            return None
        [probabilities] = self._probabilities(crop_features(pixels, contrast_map(pixels), box)[None, :])
        best = self.objects[int(probabilities[self.objects].argmax())]
        return str(self.forest.classes_[best]), float(probabilities[best])

    def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The trees' vote shares, smoothed (add one vote per class): a box all trees agree on is very
        likely, never certain, so a score_threshold of 1 still means "only what is certain"."""
        trees, classes = len(self.forest.estimators_), len(self.forest.classes_)
        return (self.forest.predict_proba(rows) * trees + 1) / (trees + classes)


# --- the model Label Studio talks to ----------------------------------------------------------------------------
class ObjectDetector(LabelStudioMLBase):
    """Finds the config's labels in each task's image and draws a box around each."""

    model_type = "object_detection"

    def setup(self) -> None:
        self.detector: TrainableDetector | YoloDetector | None = self.train_output.get("detector")
        self.thresholds: dict[str, float] = self.train_output.get("thresholds", {})
        self.kind = "yolo" if isinstance(self.detector, YoloDetector) else "trainable"
        # YOLO letterboxes the picture into its input, so a larger decode would only be scaled down again
        detector = self.detector
        self.decode_side = max(detector.height, detector.width) if isinstance(detector, YoloDetector) else WORK_SIDE

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        """MODEL_URI: a YOLO detector exported to ONNX (``yolo export model=best.pt format=onnx``)."""
        if path.suffix != ".onnx":
            raise ValueError("MODEL_URI for object detection is a YOLO model exported to ONNX (a .onnx file); "
                             f"got {path.suffix or 'a file without suffix'}")
        return {"detector": YoloDetector(path)}

    def threshold(self, label: str) -> float:
        """The score a box of ``label`` needs (see the module docstring for the order)."""
        configured = self.control.attrs.get("model_score_threshold")
        try:
            default = float(configured)
        except (TypeError, ValueError):
            default = self.thresholds.get(label, DEFAULT_SCORE[self.kind])
        return self.score_threshold_or(default)

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        interaction = self.interaction(context)
        if interaction is not None and self._prompts(interaction):  # the annotator drew or clicked (one task)
            return [self.suggest(task, interaction) for task in tasks]
        if self.detector is None:
            self.task_references(tasks)  # a missing field still fails the request, by name
            return [self.prediction([]) for _ in tasks]  # not trained yet: nothing rather than made-up boxes
        pictures = self.task_images(tasks, self.decode_side)
        return self.predictions_for(tasks, pictures, self._boxes)  # a broken image costs only its task

    def _boxes(self, pictures: list[UprightImage]) -> list[dict]:
        predictions = []
        found = self._detect(pictures, min_score=min(self.threshold(label) for label in self.labels))
        for picture, (boxes, scores, labels) in zip(pictures, found, strict=True):
            results = [self.box_result(box, picture.width, picture.height, label, score)
                       for box, score, label in zip(boxes, scores, labels, strict=True)
                       if score >= self.threshold(label)]
            scores = [r["score"] for r in results]
            predictions.append(self.prediction(results, float(np.mean(scores)) if scores else 0.0))
        return predictions

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        labeled = self._labeled_images(annotations)
        if not labeled:
            raise ValueError("training needs annotated images with boxes of this config's labels; none loaded")
        if isinstance(self.detector, YoloDetector):
            return self._calibrate(self.detector, labeled)
        rows, labels = [], []
        for picture, truth in labeled:
            more_rows, more_labels = TrainableDetector.examples(picture, truth)
            rows += more_rows
            labels += more_labels
        if len(set(labels)) < 2:
            raise ValueError(f"training needs boxes and background to tell apart; every example is {labels[0]!r}")
        return {"detector": TrainableDetector.fit(rows, labels), "trained_on": len(labeled),
                "boxes": sum(len(truth) for _, truth in labeled)}

    # --- interactive pre-annotation ---------------------------------------
    def suggest(self, task: dict, interaction: Interaction) -> dict:
        """The suggestions for what the annotator just did on ``task``'s image (see the module docstring)."""
        [picture] = self.task_images([task], self.decode_side, keep=True)  # kept for the annotator's next click
        if isinstance(picture, MediaError):
            return self.failed_task(task, picture)
        pixels = np.asarray(picture.image, dtype=np.float64) / 255.0
        found = self._drawn_and_alike(task, picture, pixels, self._prompts(interaction, "box"))
        found += self._under_clicks(task, picture, pixels, self._prompts(interaction, "point"))
        results = [self.box_result(box / picture.scale, picture.width, picture.height, label, score)
                   for box, label, score in found]
        return self.prediction(results, max((score for _, _, score in found), default=0.0))

    def _drawn_and_alike(self, task: dict, picture: UprightImage, pixels: np.ndarray,
                         drawn: list[Region]) -> list[tuple[np.ndarray, str, float]]:
        """Each drawn box (working pixels) with the model's label, then the regions like it with that label."""
        found = []
        for region in drawn:
            box = self._working_box(region, picture)
            labeled = self._label_box(task, picture, pixels, box, region.label)
            if labeled is not None:
                found.append((box, *labeled))
                found += [(other, labeled[0], float(likeness))
                          for other, likeness in zip(*similar_regions(pixels, box), strict=True)]
        return found

    def _under_clicks(self, task: dict, picture: UprightImage, pixels: np.ndarray,
                      points: list[Region]) -> list[tuple[np.ndarray, str, float]]:
        """The box of each object under a positive click, labeled; objects under a negative click left out."""
        positive = [self._working_point(p, picture) for p in points if p.positive]
        if not positive:
            return []
        negative = [self._working_point(p, picture) for p in points if not p.positive]
        hint = next((point.label for point in points if point.positive and point.label), None)
        found = []
        for box in blob_boxes(ndimage.binary_opening(contrast_map(pixels) > BLOB_CONTRAST), positive, negative):
            labeled = self._label_box(task, picture, pixels, box, hint)
            if labeled is not None:
                found.append((box, *labeled))
        return found

    def _prompts(self, interaction: Interaction, kind: str | None = None) -> list[Region]:
        """The drawn boxes and clicked points on this model's image (``kind`` "box" or "point" for one)."""
        return [region for region in interaction.regions if region.kind in ((kind,) if kind else ("box", "point"))
                and region.to_name in ("", self.object_tag.name) and region.x is not None]

    def _label_box(self, task: dict, picture: UprightImage, pixels: np.ndarray, box: np.ndarray,
                   given: str | None) -> tuple[str, float] | None:
        """What the model calls ``box`` (working pixels); the annotator's ``given`` label when no model can say."""
        if isinstance(self.detector, TrainableDetector):
            labeled = self.detector.classify(pixels, box)
            if labeled is not None and labeled[0] in self.labels:
                return labeled
        elif isinstance(self.detector, YoloDetector):  # the detection overlapping the box most, if any does
            key = ("detections", task.get("id"), self.task_value(task))
            boxes, scores, labels = self.task_cache.get_or_compute(
                key, lambda: self._detect([picture], CALIBRATION_FLOOR)[0])
            overlaps = iou(box / picture.scale, boxes)[0] if len(boxes) else np.zeros(0)
            if overlaps.size and overlaps.max() > 0:
                return labels[int(overlaps.argmax())], float(scores[int(overlaps.argmax())])
        label = self.label_of(given)
        return (label, ANNOTATOR_SCORE) if label in self.labels else None

    @staticmethod
    def _working_point(region: Region, picture: UprightImage) -> tuple[float, float]:
        """A region's corner in pixels of the decoded (possibly downscaled) image, from its percent."""
        return region.x * picture.image.width / 100.0, region.y * picture.image.height / 100.0

    @classmethod
    def _working_box(cls, region: Region, picture: UprightImage) -> np.ndarray:
        x, y = cls._working_point(region, picture)
        width, height = region.width * picture.image.width / 100.0, region.height * picture.image.height / 100.0
        return np.array([x, y, x + width, y + height])

    # --- helpers ----------------------------------------------------------
    def _detect(self, pictures: list[UprightImage], min_score: float) -> list[tuple[np.ndarray, np.ndarray, list]]:
        """Per image: boxes [N, 4] in displayed pixels, scores [N] and config labels, for this config's labels."""
        if isinstance(self.detector, YoloDetector):
            found = []
            for picture, detections in zip(pictures, self.detector.detect([p.image for p in pictures], min_score),
                                           strict=True):
                labels = [self.label_for_class(self.detector.name_of(c)) for c in detections.classes]
                found.append((detections.corners / picture.scale, detections.scores, labels))
        else:
            found = self.detector.detect(pictures)
        kept = []
        for boxes, scores, labels in found:  # labels no longer in the config (or unmapped) are never predicted
            keep = [i for i, label in enumerate(labels) if label in self.labels]
            kept.append((boxes.reshape(-1, 4)[keep], scores[keep], [labels[i] for i in keep]))
        return kept

    def _calibrate(self, detector: YoloDetector, labeled: list[tuple[UprightImage, list[LabeledBox]]]) -> dict:
        """Per label, the score threshold with the best F1 at IoU 0.5 on the annotated images."""
        found = self._detect([picture for picture, _ in labeled], CALIBRATION_FLOOR)
        scores: dict[str, list] = {label: [] for label in self.labels}
        hits: dict[str, list] = {label: [] for label in self.labels}
        totals = dict.fromkeys(self.labels, 0)
        for (boxes, box_scores, labels), (_, truth) in zip(found, labeled, strict=True):
            for label in self.labels:
                mine = [i for i, name in enumerate(labels) if name == label]
                true = np.array([b.corners for b in truth if b.label == label]).reshape(-1, 4)
                totals[label] += len(true)
                scores[label] += list(box_scores[mine])
                hits[label] += list(match(boxes[mine], box_scores[mine], true))
        thresholds, f1 = {}, {}
        for label in self.labels:
            if totals[label]:
                found_hits = np.array(hits[label], dtype=bool)
                thresholds[label], f1[label] = best_threshold(np.array(scores[label]), found_hits, totals[label])
        return {"detector": detector, "thresholds": thresholds, "f1_at_threshold": f1, "trained_on": len(labeled)}

    def _labeled_images(self, annotations: list[dict]) -> list[tuple[UprightImage, list[LabeledBox]]]:
        """Each annotation's decoded image and its usable boxes; everything else skipped with its reason."""
        labeled = []
        for annotation, picture in zip(annotations, self.annotation_images(annotations, self.decode_side), strict=True):
            if not isinstance(picture, MediaError):  # one that failed is skipped, saying why
                boxes = self.annotation_boxes(annotation, picture.width, picture.height)  # bad boxes skipped
                if boxes:
                    labeled.append((picture, boxes))
        return labeled
