"""IoU, non-maximum suppression, per-label thresholds and average precision for detectors (numpy).

Boxes here are pixel corners ``[x1, y1, x2, y2]``; ``box_units.py`` converts them
from and to Label Studio's percent. Kept in the runtime so a ``model.py`` keeps
only its model logic, and the benchmark scores with the same arithmetic.
"""

from __future__ import annotations

import numpy as np

#: Boxes overlapping a kept one by more than this are dropped by ``nms`` (ultralytics' default is 0.7
#: for its own duplicates; 0.5 is the usual evaluation threshold and suits proposals).
NMS_IOU = 0.5
#: A prediction matches an annotated box of its label at this IoU or more (PASCAL VOC's mAP@0.5).
MATCH_IOU = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` [N, 4] with every box in ``b`` [M, 4]: [N, M]."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left, top = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    right, bottom = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(corners: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None,
        iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    With ``classes``, boxes suppress only boxes of their own class (per-class NMS, as YOLO does).
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if classes is not None and len(corners):  # shift each class far apart, so classes never overlap
        span = corners.max() - corners.min() + 1.0
        corners = corners + (np.asarray(classes, dtype=np.float64) * span)[:, None]
    keep: list[int] = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(int(best))
        if order.size:
            order = order[iou(corners[best], corners[order])[0] <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def match(predicted: np.ndarray, scores: np.ndarray, truth: np.ndarray, threshold: float = MATCH_IOU) -> np.ndarray:
    """For predictions of one label in one image, which are true positives (greedy by score, each
    annotated box matched at most once at IoU >= ``threshold``): a boolean array in input order."""
    hits = np.zeros(len(predicted), dtype=bool)
    if not len(predicted) or not len(truth):
        return hits
    overlaps = iou(predicted, truth)
    taken = np.zeros(len(truth), dtype=bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(~taken & (overlaps[i] >= threshold), overlaps[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= 0:
            hits[i], taken[j] = True, True
    return hits


def best_threshold(scores: np.ndarray, hits: np.ndarray, total: int) -> tuple[float, float]:
    """The score threshold maximising F1 for one label, and that F1.

    ``scores``/``hits`` are every candidate detection's score and whether it matched an annotated box;
    ``total`` is the number of annotated boxes. Keeping detections scoring >= the threshold gives the F1.
    """
    if not len(scores) or total == 0:
        return 1.0, 0.0
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(hits[order])
    kept = np.arange(1, len(order) + 1)
    f1 = 2 * true_positives / (kept + total)
    best = int(np.argmax(f1))
    return float(scores[order][best]), float(f1[best])


def average_precision(scores: np.ndarray, hits: np.ndarray, total: int) -> float:
    """Area under the precision-recall curve (all points, precision made monotone), as in VOC/COCO."""
    if total == 0:
        return float("nan")
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(hits[order])
    recall = np.concatenate([[0.0], true_positives / total, [1.0]])
    precision = np.concatenate([[1.0], true_positives / np.arange(1, len(order) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
