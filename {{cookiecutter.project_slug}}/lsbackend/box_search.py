"""Boxes found from one the annotator gave: template matching ("find more like this") and the blob under a click.

Interactive detection tools need answers in milliseconds without a network: normalised
cross-correlation over the whole image (FFT, ``scipy.signal.fftconvolve``) finds regions that
look like a drawn box, and connected components of a foreground mask (``scipy.ndimage.label``)
give the object under a keypoint, a poor man's segment-anything. Boxes are pixel corners
``[x1, y1, x2, y2]`` of the array given, as in ``boxes.py``; the model converts units and labels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from .boxes import nms

#: Context around a drawn box the template keeps (fraction of its size each side): a tight box around
#: a plain object is one flat colour, and only its edges against the background say what it looks like.
TEMPLATE_MARGIN = 0.25
#: Correlation a region needs to be "like this" (1 is identical up to brightness and contrast; a circle
#: scores about 0.8 against a square of its size).
SIMILARITY = 0.9
#: Found regions overlapping each other, or the drawn box, by more than this are one object.
SIMILAR_IOU = 0.3
MAX_SIMILAR = 50


def correlation_map(pixels: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``template`` at every place it fits inside ``pixels``.

    Arrays are [H, W] or [H, W, C]; the answer is [H-h+1, W-w+1] in -1..1, per-channel means removed,
    0 where the image window is flat. Sums over windows come from integral images, the products from FFTs.
    """
    image = np.asarray(pixels, dtype=np.float64).reshape(*pixels.shape[:2], -1)
    patch = np.asarray(template, dtype=np.float64).reshape(*template.shape[:2], -1)
    h, w = patch.shape[:2]
    patch = patch - patch.mean(axis=(0, 1))
    numerator, spread = 0.0, 0.0
    for c in range(image.shape[2]):
        numerator = numerator + fftconvolve(image[:, :, c], patch[::-1, ::-1, c], mode="valid")
        total, squares = _window_sum(image[:, :, c], h, w), _window_sum(image[:, :, c] ** 2, h, w)
        spread = spread + np.clip(squares - total ** 2 / (h * w), 0.0, None)
    norm = np.sqrt(spread * float((patch ** 2).sum()))
    flat = norm < 1e-9
    return np.where(flat, 0.0, numerator / np.where(flat, 1.0, norm))


def _window_sum(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """The sum of every ``h`` x ``w`` window of ``a`` (an integral image): [H-h+1, W-w+1]."""
    integral = np.pad(a.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def similar_regions(pixels: np.ndarray, box: Iterable[float], threshold: float = SIMILARITY,
                    limit: int = MAX_SIMILAR) -> tuple[np.ndarray, np.ndarray]:
    """Regions of ``pixels`` that look like ``box`` (corners), best first: boxes [N, 4] and correlations [N].

    The template is the box with some of its surroundings (``TEMPLATE_MARGIN``); the regions are the
    local maxima of its correlation at ``threshold`` or more, suppressed against each other and the box.
    """
    height, width = pixels.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.zeros((0, 4)), np.zeros(0)
    mx, my = max(2, round((x2 - x1) * TEMPLATE_MARGIN)), max(2, round((y2 - y1) * TEMPLATE_MARGIN))
    left, top, right, bottom = max(x1 - mx, 0), max(y1 - my, 0), min(x2 + mx, width), min(y2 + my, height)
    scores = correlation_map(pixels, pixels[top:bottom, left:right])
    peaks = (scores >= threshold) & (scores == ndimage.maximum_filter(scores, size=(y2 - y1, x2 - x1)))
    rows, cols = np.nonzero(peaks)
    found = np.stack([cols + (x1 - left), rows + (y1 - top), cols + (x2 - left), rows + (y2 - top)], axis=1)
    candidates = np.concatenate([[[x1, y1, x2, y2]], found]).astype(np.float64)
    ranked = np.concatenate([[np.inf], scores[rows, cols]])
    kept = [i for i in nms(candidates, ranked, iou_threshold=SIMILAR_IOU) if i != 0][:limit]
    return candidates[kept], ranked[kept]


def blob_boxes(foreground: np.ndarray, positive: Iterable[tuple[float, float]],
               negative: Iterable[tuple[float, float]] = (), reach: float = 3.0) -> np.ndarray:
    """The box [N, 4] of each connected foreground blob under a positive point ``(x, y)``, one per blob.

    A click just beside a thin object still finds it: a point within ``reach`` pixels of a blob is on it.
    A blob under a negative point is never answered (the annotator said "not this one").
    """
    labeled, count = ndimage.label(foreground)
    if not count:
        return np.zeros((0, 4))
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(labeled == 0, return_indices=True)

    def blob_at(point: tuple[float, float]) -> int:
        col = min(max(int(point[0]), 0), labeled.shape[1] - 1)
        row = min(max(int(point[1]), 0), labeled.shape[0] - 1)
        if distance[row, col] > reach:
            return 0
        return int(labeled[near_rows[row, col], near_cols[row, col]])

    excluded = {blob_at(p) for p in negative}
    chosen = dict.fromkeys(b for b in map(blob_at, positive) if b and b not in excluded)
    extents = ndimage.find_objects(labeled)
    return np.array([[extents[b - 1][1].start, extents[b - 1][0].start, extents[b - 1][1].stop,
                      extents[b - 1][0].stop] for b in chosen], dtype=np.float64).reshape(-1, 4)
