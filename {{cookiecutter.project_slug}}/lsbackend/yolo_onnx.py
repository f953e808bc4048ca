"""Run a YOLO detector exported to ONNX (``yolo export model=best.pt format=onnx``) with numpy only.

What ultralytics' exporter writes, and what this module reads:

- input ``images`` ``[B, 3, H, W]``: RGB scaled to 0..1, the picture letterboxed into ``H x W``
  (scaled to fit, centred, padded with grey 114);
- output ``[B, 4 + nc, anchors]``: per anchor ``cx, cy, w, h`` in input pixels then one score per class
  (no objectness); or, exported with ``nms=True`` and for end-to-end models (YOLOv10, YOLO26),
  ``[B, max_det, 6]``: ``x1, y1, x2, y2, score, class``;
- metadata ``names`` (a Python dict repr, ``{0: 'person', ...}``), ``imgsz`` (``[640, 640]``), ``stride``.

Decoding, per-class non-maximum suppression and the way back from the letterbox to the
original picture's pixels are here; torch and ultralytics are never needed at run time.
onnxruntime is the optional extra (``pip install -r requirements-onnx.txt``), imported on load.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .boxes import nms

PAD = 114  # ultralytics' letterbox grey
DEFAULT_SIDE = 640
#: ultralytics' own predict defaults: duplicates overlap more than this; at most this many boxes per image
NMS_IOU = 0.7
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class Detections:
    """One image's detections: pixel corners ``x1, y1, x2, y2`` [N, 4], scores [N] and class ids [N]."""

    corners: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Letterbox:
    """How a picture was fitted into the network's input: scale, then left/top padding."""

    scale: float
    left: int
    top: int

    def undo(self, corners: np.ndarray) -> np.ndarray:
        """Input-pixel corners -> the original picture's pixels."""
        shift = np.array([self.left, self.top, self.left, self.top], dtype=np.float64)
        return (np.asarray(corners, dtype=np.float64) - shift) / self.scale


def letterbox(image: Image.Image, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
    """``image`` scaled to fit ``height x width`` and centred on grey, as [3, H, W] float32 in 0..1."""
    scale = min(height / image.height, width / image.width)
    inner = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    left, top = round((width - inner[0]) / 2 - 0.1), round((height - inner[1]) / 2 - 0.1)
    canvas = Image.new("RGB", (width, height), (PAD, PAD, PAD))
    canvas.paste(image.convert("RGB").resize(inner, Image.Resampling.BILINEAR), (left, top))
    pixels = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return pixels, Letterbox(scale, left, top)


def _literal(text: str | None) -> object:
    try:
        return ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def class_names(metadata: dict) -> dict[int, str]:
    """``names`` from the ONNX metadata (a dict or list repr) as class id -> name; empty when absent."""
    names = _literal(metadata.get("names"))
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        return {}
    return {int(k): str(v) for k, v in names.items() if isinstance(k, int) or str(k).isdigit()}


def _input_side(shape: list, metadata: dict) -> tuple[int, int]:
    """The network's input height and width: fixed in its shape, else ``imgsz`` metadata, else 640."""
    height, width = shape[2:4]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    size = _literal(metadata.get("imgsz"))
    if isinstance(size, int):
        return size, size
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    return DEFAULT_SIDE, DEFAULT_SIDE


class YoloDetector:
    """A YOLO ONNX file's session, input size and class names; pickles as its bytes (sessions do not)."""

    def __init__(self, path: Path) -> None:
        self.model_bytes = Path(path).read_bytes()
        self._open()

    def __getstate__(self) -> dict:
        return {"model_bytes": self.model_bytes}

    def __setstate__(self, state: dict) -> None:
        self.model_bytes = state["model_bytes"]
        self._open()

    def _open(self) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError("MODEL_URI is an ONNX model but onnxruntime is not installed: "
                               "pip install -r requirements-onnx.txt (images: --build-arg EXTRAS=onnx)") from None
        self.session = onnxruntime.InferenceSession(self.model_bytes, providers=onnxruntime.get_available_providers())
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or "float" not in inputs[0].type or len(inputs[0].shape) != 4:
            raise ValueError("a YOLO ONNX model has one float image input [batch, 3, height, width]; this one has "
                             f"{[(i.name, i.type, i.shape) for i in inputs]}")
        self.input_name, shape = inputs[0].name, list(inputs[0].shape)
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None  # None: any batch size
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.height, self.width = _input_side(shape, metadata)
        self.names = class_names(metadata)
        outputs = [o for o in self.session.get_outputs() if len(o.shape or []) == 3]
        if not outputs:
            raise ValueError("a YOLO ONNX model's output is [batch, 4 + classes, anchors] or [batch, detections, 6]; "
                             f"this one has {[(o.name, o.shape) for o in self.session.get_outputs()]}")
        self.output_name = outputs[0].name

    def detect(self, images: list[Image.Image], min_score: float) -> list[Detections]:
        """Each image's detections scoring ``min_score`` or more, in that image's own pixels."""
        boxed = [letterbox(image, self.height, self.width) for image in images]
        step = self.batch or len(boxed) or 1
        found: list[Detections] = []
        for start in range(0, len(boxed), step):
            part = boxed[start:start + step]
            batch = np.stack([pixels for pixels, _ in part])
            output = np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0], dtype=np.float64)
            for rows, (_, box) in zip(output, part, strict=True):
                found.append(self._decode(rows, box, min_score))
        return found

    def _is_end_to_end(self, rows: np.ndarray) -> bool:
        """``[max_det, 6]`` rather than ``[4 + nc, anchors]``: told by the class count when it is known."""
        if self.names:
            return rows.shape[0] != 4 + len(self.names) and rows.shape[1] == 6
        return rows.shape[1] == 6 and rows.shape[0] != 6

    def _decode(self, rows: np.ndarray, box: Letterbox, min_score: float) -> Detections:
        if self._is_end_to_end(rows):  # already suppressed by the network: x1, y1, x2, y2, score, class
            rows = rows[rows[:, 4] >= min_score]
            corners, scores, classes = rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)
        else:
            anchors = rows.T  # [anchors, 4 + nc]
            if anchors.shape[1] < 5:
                raise ValueError(f"YOLO output has {anchors.shape[1]} values per anchor; expected 4 + classes")
            class_scores = anchors[:, 4:]
            classes = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(len(anchors)), classes]
            keep = scores >= min_score
            centre, size = anchors[keep, :2], anchors[keep, 2:4]
            corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
            scores, classes = scores[keep], classes[keep]
            kept = nms(corners, scores, classes, NMS_IOU)[:MAX_DETECTIONS]
            corners, scores, classes = corners[kept], scores[kept], classes[kept]
        return Detections(box.undo(corners).reshape(-1, 4), scores, classes)

    def name_of(self, class_id: int) -> str:
        """The model's name for a class id (its number as text when the metadata has no ``names``)."""
        return self.names.get(int(class_id), str(int(class_id)))
