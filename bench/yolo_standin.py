"""A stand-in for a user's YOLO export, built with ``onnx.helper``: no torch, no ultralytics, no download.

Why it exists: ``bench/evaluate.py`` measures the object detection variant's ONNX route (letterbox,
decoding, per-class NMS, the way back to percent of the picture, and the per-label score thresholds
``fit`` learns) on the bench's synthetic scenes, and this offline machine cannot fetch a trained
network. This graph speaks YOLO's exported format exactly:

- input ``images`` ``[1, 3, 160, 160]``, RGB 0..1, letterboxed with grey 114 by the runtime;
- output ``output0`` ``[1, 4 + 2, anchors]``: ``cx, cy, w, h`` in input pixels, then the scores of
  ``square`` and ``circle`` (no objectness);
- metadata ``names`` (``{0: 'square', 1: 'circle'}``, which map to the config's ``Square`` and ``Circle``
  ignoring case), ``imgsz``, ``stride``, ``task``.

What it computes is a hand-made blob detector, not a trained network: the picture is halved and
smoothed; each cell's foreground is how far its colour is from the picture's background colour (a
robust mean over the picture, the letterbox grey left out); at each of ``SIZES`` (box sides in halved
pixels) a box's mean foreground, less twice the ring's around it, answers most for a lone blob of that
size; a cell is kept only where that answer is a maximum over its neighbours in position and size (a
scale-space peak); its score is a sigmoid of the answer, split between the classes by how much
foreground sits in the box's corners outside its inscribed disk (a square fills them, a circle does
not, a tilted square only partly). The boxes are the cells' squares at the peak's size. So the
output depends on every pixel, finds most objects roughly, often takes a tilted square for a circle,
answers to triangles and merges touching objects, and its scores are not calibrated probabilities
(the sigmoid is soft on purpose, so the usual default threshold of 0.25 lets many weak peaks through):
exactly the case where per-label thresholds learnt from annotations can matter. Its rows measure the
route and the threshold learning, not how accurate a real YOLO model is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 160  # the network's input side (the bench's pictures are 80-160 pixels a side)
HALF = 2  # the grid's stride: the picture is averaged 2x2 before the filters
SIZES = (5, 7, 9, 11, 13, 17, 21, 27, 35)  # box sides in halved pixels (10-70 input pixels), odd: centred
NAMES = {0: "square", 1: "circle"}
GAIN, MIDPOINT = 4.0, 0.3  # objectness = sigmoid(GAIN * (colour contrast - MIDPOINT)): deliberately uncalibrated
CORNER_GAIN, CORNER_SPLIT = 8.0, 0.6  # square vs circle: sigmoid(CORNER_GAIN * (corner share - CORNER_SPLIT))
EPS = 0.05  # keeps the corner share finite where nothing stands out
BACKGROUND_SPREADS = (0.1, 0.03, 0.03)  # squared colour distances: each robust mean trusts cells closer than this
SURROUND = 2.0  # how much foreground around a box costs it (a lone blob answers most)
PAD_GREY = 114 / 255


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_v"))


def _disk(size: int) -> tuple[np.ndarray, float]:
    """A kernel [1, 1, size, size] averaging the disk inscribed in a ``size`` square, and the disk's area."""
    centre = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size]
    inside = ((xs - centre) ** 2 + (ys - centre) ** 2 <= (size / 2) ** 2).astype(np.float32)
    return (inside / inside.sum())[None, None], float(inside.sum())


def _pool(op: str, source: str, side: int, out: str) -> list:
    """``op`` (AveragePool or MaxPool) over a ``side`` square around each cell, as two 1-D passes."""
    half = (side - 1) // 2
    extra = {"count_include_pad": 1} if op == "AveragePool" else {}
    return [helper.make_node(op, [source], [out + "_rows"], kernel_shape=[1, side], pads=[0, half, 0, half], **extra),
            helper.make_node(op, [out + "_rows"], [out], kernel_shape=[side, 1], pads=[half, 0, half, 0], **extra)]


def _foreground() -> list:
    """``fg`` [1, 1, 80, 80]: how far each cell's colour is from the picture's background colour, zero on
    the letterbox grey. The background colour is a robust mean: the picture's mean colour, then means
    that weigh each cell less the further it is from the last estimate (objects drop out)."""
    nodes = [helper.make_node("AveragePool", ["images"], ["small"], kernel_shape=[HALF, HALF], strides=[HALF, HALF]),
             helper.make_node("AveragePool", ["small"], ["smooth"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              count_include_pad=0),
             # the letterbox's grey is not picture: cells whose every channel is 114/255 are left out
             _const("grey", np.float32(PAD_GREY)), helper.make_node("Sub", ["small", "grey"], ["off_grey"]),
             helper.make_node("Abs", ["off_grey"], ["off_grey_abs"]),
             helper.make_node("ReduceMax", ["off_grey_abs"], ["off_grey_max"], axes=[1], keepdims=1),
             _const("grey_tolerance", np.float32(1.5 / 255)),
             helper.make_node("Greater", ["off_grey_max", "grey_tolerance"], ["picture_b"]),
             helper.make_node("Cast", ["picture_b"], ["weight0"], to=1)]
    for step, spread in enumerate(BACKGROUND_SPREADS):
        w, bg, nxt = f"weight{step}", f"bg{step}", f"weight{step + 1}"
        nodes += [helper.make_node("Mul", ["smooth", w], [bg + "_wx"]),
                  helper.make_node("ReduceSum", [bg + "_wx", "space_axes"], [bg + "_sum"], keepdims=1),
                  helper.make_node("ReduceSum", [w, "space_axes"], [bg + "_n"], keepdims=1),
                  helper.make_node("Add", [bg + "_n", "eps"], [bg + "_n_eps"]),
                  helper.make_node("Div", [bg + "_sum", bg + "_n_eps"], [bg]),  # [1, 3, 1, 1]
                  helper.make_node("Sub", ["smooth", bg], [bg + "_d"]),
                  helper.make_node("Mul", [bg + "_d", bg + "_d"], [bg + "_d2"]),
                  helper.make_node("ReduceSum", [bg + "_d2", "channel_axis"], [bg + "_dist"], keepdims=1),
                  _const(bg + "_spread", np.float32(-1.0 / spread)),
                  helper.make_node("Mul", [bg + "_dist", bg + "_spread"], [bg + "_logw"]),
                  helper.make_node("Exp", [bg + "_logw"], [bg + "_w"]),
                  helper.make_node("Mul", [bg + "_w", "weight0"], [nxt])]
    last = f"bg{len(BACKGROUND_SPREADS) - 1}"
    nodes += [helper.make_node("Abs", [last + "_d"], ["fg_abs"]),
              helper.make_node("ReduceSum", ["fg_abs", "channel_axis"], ["fg_all"], keepdims=1),
              helper.make_node("Mul", ["fg_all", "weight0"], ["fg"])]
    return nodes


def _scale(size: int) -> list:
    """The nodes of one box size: its blob answer ``c{size}`` and corner share ``r{size}``."""
    s, half = str(size), (size - 1) // 2
    kernel, disk_area = _disk(size)
    outer, square_area = 2 * size + 1, float(size * size)
    ring_w = float(outer * outer) / (outer * outer - square_area)
    nodes = _pool("AveragePool", "fg", size, "box" + s) + _pool("AveragePool", "fg", outer, "outer" + s)
    nodes += [_const("ring_w" + s, np.float32(ring_w)), _const("box_w" + s, np.float32(ring_w - 1.0)),
              helper.make_node("Mul", ["outer" + s, "ring_w" + s], ["outer_part" + s]),
              helper.make_node("Mul", ["box" + s, "box_w" + s], ["box_part" + s]),
              helper.make_node("Sub", ["outer_part" + s, "box_part" + s], ["ring" + s]),
              helper.make_node("Mul", ["ring" + s, "surround_weight"], ["ring_cost" + s]),
              helper.make_node("Sub", ["box" + s, "ring_cost" + s], ["c" + s]),  # a blob of this size answers most
              _const("disk_k" + s, kernel),
              helper.make_node("Conv", ["fg", "disk_k" + s], ["disk" + s], pads=[half] * 4),
              # the corners: the box's foreground with the disk's part taken out, as a share of the disk's
              _const("corner_box" + s, np.float32(square_area / (square_area - disk_area))),
              _const("corner_disk" + s, np.float32(disk_area / (square_area - disk_area))),
              helper.make_node("Mul", ["box" + s, "corner_box" + s], ["corner_a" + s]),
              helper.make_node("Mul", ["disk" + s, "corner_disk" + s], ["corner_b" + s]),
              helper.make_node("Sub", ["corner_a" + s, "corner_b" + s], ["corner" + s]),
              helper.make_node("Add", ["disk" + s, "eps"], ["disk_eps" + s]),
              helper.make_node("Div", ["corner" + s, "disk_eps" + s], ["r" + s])]
    return nodes


def anchor_boxes() -> np.ndarray:
    """``[1, 4, anchors]``: each cell's centre and its box side in input pixels, size by size."""
    cells = SIDE // HALF
    ys, xs = np.mgrid[:cells, :cells].astype(np.float32) * HALF + HALF / 2
    per_size = [np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, size * HALF, np.float32),
                          np.full(xs.size, size * HALF, np.float32)]) for size in SIZES]
    return np.concatenate(per_size, axis=1)[None].astype(np.float32)


def _heads() -> list:
    """Scale-space peaks of the contrast, their objectness and the two class scores, as ``output0``."""
    cells, count = SIDE // HALF, len(SIZES)
    contrast = [f"c{size}" for size in SIZES]
    corners = [f"r{size}" for size in SIZES]
    return [helper.make_node("Concat", contrast, ["contrast"], axis=1),  # [1, sizes, 80, 80]
            _const("volume_shape", np.array([1, 1, count, cells, cells], dtype=np.int64)),
            helper.make_node("Reshape", ["contrast", "volume_shape"], ["volume"]),
            helper.make_node("MaxPool", ["volume"], ["peaks"], kernel_shape=[3, 3, 3], pads=[1] * 6),
            helper.make_node("GreaterOrEqual", ["volume", "peaks"], ["is_peak_b"]),
            helper.make_node("Cast", ["is_peak_b"], ["is_peak"], to=1),
            _const("gain", np.float32(GAIN)), _const("midpoint", np.float32(MIDPOINT)),
            helper.make_node("Sub", ["volume", "midpoint"], ["above"]),
            helper.make_node("Mul", ["above", "gain"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["likely"]),
            helper.make_node("Mul", ["likely", "is_peak"], ["objectness"]),
            helper.make_node("Concat", corners, ["corner_share"], axis=1),
            _const("corner_gain", np.float32(CORNER_GAIN)), _const("corner_split", np.float32(CORNER_SPLIT)),
            helper.make_node("Sub", ["corner_share", "corner_split"], ["square_margin"]),
            helper.make_node("Mul", ["square_margin", "corner_gain"], ["square_logit"]),
            helper.make_node("Sigmoid", ["square_logit"], ["square_share"]),
            _const("one", np.float32(1.0)), helper.make_node("Sub", ["one", "square_share"], ["circle_share"]),
            _const("flat", np.array([1, 1, count * cells * cells], dtype=np.int64)),
            helper.make_node("Reshape", ["objectness", "flat"], ["objectness_flat"]),
            helper.make_node("Reshape", ["square_share", "flat"], ["square_flat"]),
            helper.make_node("Reshape", ["circle_share", "flat"], ["circle_flat"]),
            helper.make_node("Mul", ["objectness_flat", "square_flat"], ["square_score"]),
            helper.make_node("Mul", ["objectness_flat", "circle_flat"], ["circle_score"]),
            _const("anchors", anchor_boxes()),
            helper.make_node("Concat", ["anchors", "square_score", "circle_score"], ["output0"], axis=1)]


def build(path: Path) -> Path:
    """Write the stand-in detector to ``path`` (about 1 MB, mostly its constant anchor grid) and return it."""
    nodes = [_const("channel_axis", np.array([1], dtype=np.int64)), _const("eps", np.float32(EPS)),
             _const("surround_weight", np.float32(SURROUND)),
             _const("space_axes", np.array([2, 3], dtype=np.int64))] + _foreground()
    for size in SIZES:
        nodes += _scale(size)
    nodes += _heads()
    anchors = len(SIZES) * (SIDE // HALF) ** 2
    graph = helper.make_graph(
        nodes, "yolo_standin",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + len(NAMES), anchors])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ls-ml-template bench")
    model.ir_version = 8
    helper.set_model_props(model, {"names": str(NAMES), "imgsz": str([SIDE, SIDE]), "stride": str(HALF),
                                   "task": "detect", "description": "bench stand-in for a YOLO export"})
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path
