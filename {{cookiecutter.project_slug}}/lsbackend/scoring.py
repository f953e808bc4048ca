"""Scoring ``predict`` output against annotations, one function per control type, so any model is scored alike.

Scoring reads only what Label Studio stores (result items of the model's
control), never the model's insides, so a model you wrote yourself is scored
exactly like the shipped ones:

- ``choices`` (classification): per-label precision, recall and F1 over the
  chosen labels, and accuracy (the predicted set of labels is the annotated one);
- ``labels`` (named entities): exact-span F1, a span counting only when its
  start, end and label all match;
- ``rectanglelabels`` (object detection): mAP@0.5, boxes matched by IoU;
- another control type is one more function taking the same ``(gold, predicted)``
  pairs, added to ``SCORERS``.

Every score also says how well the prediction scores are calibrated: the
expected calibration error (ECE) of the scored items, i.e. how far "score 0.8"
is from "right 80% of the time" (0 is perfect). Label Studio's Data Manager
sorts tasks by that score, so it is what active learning relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import LabelStudioMLBase

#: Calibration bins of the expected calibration error (0-0.1, 0.1-0.2, ...).
CALIBRATION_BINS = 10
Pair = tuple[list[dict], list[dict]]  # (annotated result items, predicted result items) of one control, one task


class EvaluationError(ValueError):
    """Scoring cannot be done as asked; the message says why and what to do."""


def _items(result: object, control: str) -> list[dict]:
    return [i for i in (result if isinstance(result, list) else [])
            if isinstance(i, dict) and i.get("from_name") == control and isinstance(i.get("value"), dict)]


def _item_labels(item: dict, label_of: Callable[[object], str | None]) -> list[str]:
    value = item["value"]
    chosen = value.get("choices") or value.get("labels") or value.get("rectanglelabels") or []
    return [label for label in (label_of(c) for c in chosen if isinstance(c, str)) if label is not None]


@dataclass
class _Tally:
    """Per-label counts plus (score, right) of every predicted item that carried a score."""

    labels: list[str]
    true_pos: dict
    false_pos: dict
    false_neg: dict
    scored: list[tuple[float, bool]]
    exact: int = 0
    examples: int = 0

    @classmethod
    def empty(cls, labels: list[str]) -> _Tally:
        return cls(labels, dict.fromkeys(labels, 0), dict.fromkeys(labels, 0), dict.fromkeys(labels, 0), [])

    def count(self, gold: set[tuple], predicted: set[tuple]) -> None:
        """Sets of keys whose last element is the label."""
        self.examples += 1
        self.exact += gold == predicted
        for key in predicted:
            bucket = self.true_pos if key in gold else self.false_pos
            bucket[key[-1]] = bucket.get(key[-1], 0) + 1
        for key in gold - predicted:
            self.false_neg[key[-1]] = self.false_neg.get(key[-1], 0) + 1


def score_choices(pairs: list[Pair], labels: list[str], label_of: Callable[[object], str | None]) -> dict:
    """Classification: per-label P/R/F1 over chosen labels, accuracy over tasks (exact label set)."""
    tally = _Tally.empty(labels)
    for gold_items, predicted_items in pairs:
        gold = {(label,) for item in gold_items for label in _item_labels(item, label_of)}
        predicted = set()
        for item in predicted_items:
            found = {(label,) for label in _item_labels(item, label_of)}
            predicted |= found
            if isinstance(item.get("score"), int | float) and found:
                tally.scored.append((float(item["score"]), found <= gold))
        tally.count(gold, predicted)
    report = _report(tally, "f1")
    report["accuracy"] = tally.exact / tally.examples if tally.examples else 0.0
    return report


def score_spans(pairs: list[Pair], labels: list[str], label_of: Callable[[object], str | None]) -> dict:
    """Named entities: exact-span F1 (start, end and label must all match)."""
    tally = _Tally.empty(labels)

    def spans(item: dict) -> set[tuple]:
        value = item["value"]
        if not isinstance(value.get("start"), int) or not isinstance(value.get("end"), int):
            return set()
        return {(value["start"], value["end"], label) for label in _item_labels(item, label_of)}

    for gold_items, predicted_items in pairs:
        gold = set().union(*(spans(i) for i in gold_items))
        predicted = set()
        for item in predicted_items:
            found = spans(item)
            predicted |= found
            if isinstance(item.get("score"), int | float) and found:
                tally.scored.append((float(item["score"]), found <= gold))
        tally.count(gold, predicted)
    return _report(tally, "f1")


def _box(item: dict) -> tuple[float, float, float, float] | None:
    """A rectangle's (x0, y0, x1, y1) in Label Studio's percent units; None when malformed or rotated."""
    value = item["value"]
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return None
    return None if float(value.get("rotation") or 0) else (x, y, x + w, y + h)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(hits: list[tuple[float, bool]], support: int) -> float:
    """Area under the precision-recall curve of ranked detections, precision made monotone (VOC, all points)."""
    if not support:
        return 0.0
    ranked = sorted(hits, key=lambda h: -h[0])
    recalls, precisions, right = [0.0], [1.0], 0
    for rank, (_, hit) in enumerate(ranked, 1):
        right += hit
        recalls.append(right / support)
        precisions.append(right / rank)
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    return sum((recalls[i] - recalls[i - 1]) * precisions[i] for i in range(1, len(recalls)))


def score_boxes(pairs: list[Pair], labels: list[str], label_of: Callable[[object], str | None],
                threshold: float = 0.5) -> dict:
    """Object detection: mAP@0.5 (``score``), and per-label P/R/F1 of the boxes predicted.

    Each predicted box, highest score first, matches the unmatched annotated box of its label with
    the highest IoU, if that reaches ``threshold``; AP per label is averaged over labels annotated.
    """
    tally = _Tally.empty(labels)
    hits: dict[str, list[tuple[float, bool]]] = {}
    for gold_items, predicted_items in pairs:
        gold = [(b, lab) for i in gold_items if (b := _box(i)) for lab in _item_labels(i, label_of)]
        boxes = [(float(i.get("score", 0.0) or 0.0), b, lab) for i in predicted_items if (b := _box(i))
                 for lab in _item_labels(i, label_of)]
        free = list(range(len(gold)))
        for score, box, label in sorted(boxes, key=lambda p: -p[0]):
            best = max((g for g in free if gold[g][1] == label), key=lambda g: iou(box, gold[g][0]), default=None)
            hit = best is not None and iou(box, gold[best][0]) >= threshold
            if best is not None and hit:
                free.remove(best)
            hits.setdefault(label, []).append((score, hit))
            tally.scored.append((score, hit))
            bucket = tally.true_pos if hit else tally.false_pos
            bucket[label] = bucket.get(label, 0) + 1
        for g in free:
            tally.false_neg[gold[g][1]] = tally.false_neg.get(gold[g][1], 0) + 1
        tally.examples += 1
    report = _report(tally, "map50")
    aps = {}
    for label, row in report["per_label"].items():
        row["ap50"] = average_precision(hits.get(label, []), row["support"])
        if row["support"]:
            aps[label] = row["ap50"]
    report["score"] = sum(aps.values()) / len(aps) if aps else 0.0
    return report


#: Control type (lowercase) -> scorer of (gold, predicted) result-item pairs. Another control type
#: is one more function with the same signature.
SCORERS: dict[str, Callable[[list[Pair], list[str], Callable[[object], str | None]], dict]] = {
    "choices": score_choices,
    "labels": score_spans,
    "rectanglelabels": score_boxes,
}


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _report(tally: _Tally, metric: str) -> dict:
    """Per-label and micro-averaged precision, recall and F1; ``score`` is micro F1 (the main figure)."""
    per_label = {}
    for label in dict.fromkeys([*tally.labels, *tally.true_pos, *tally.false_neg]):
        tp, fp, fn = tally.true_pos.get(label, 0), tally.false_pos.get(label, 0), tally.false_neg.get(label, 0)
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_label[label] = {"precision": p, "recall": r, "f1": _f1(p, r), "support": tp + fn}
    tp, fp, fn = (sum(d.values()) for d in (tally.true_pos, tally.false_pos, tally.false_neg))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    supported = [v["f1"] for v in per_label.values() if v["support"]]
    return {
        "metric": metric, "score": _f1(precision, recall), "examples": tally.examples,
        "precision": precision, "recall": recall,
        "macro_f1": sum(supported) / len(supported) if supported else 0.0,
        "calibration_error": calibration_error(tally.scored), "per_label": per_label,
    }


def calibration_error(scored: list[tuple[float, bool]]) -> float | None:
    """Expected calibration error: the gap between mean score and share right, per score bin, weighted."""
    if not scored:
        return None
    bins: dict[int, list[tuple[float, bool]]] = {}
    for score, right in scored:
        bins.setdefault(min(int(score * CALIBRATION_BINS), CALIBRATION_BINS - 1), []).append((score, right))
    gap = sum(abs(sum(s for s, _ in b) - sum(r for _, r in b)) for b in bins.values())
    return gap / len(scored)


def score_model(model: LabelStudioMLBase, annotations: list[dict], batch_size: int = 64) -> dict:
    """Predict the annotated tasks with ``model`` and score its predictions against the annotations."""
    control = model.control
    scorer = SCORERS.get(control.type.lower())
    if scorer is None:
        known = ", ".join(f"<{name}>" for name in SCORERS)
        raise EvaluationError(f"no scorer for <{control.type}> yet (scored: {known}); add one to "
                              "lsbackend/scoring.py's SCORERS")
    pairs: list[Pair] = []
    for start in range(0, len(annotations), batch_size):
        batch = annotations[start : start + batch_size]
        predictions = model.predict([a["task"] for a in batch])
        for annotation, prediction in zip(batch, predictions, strict=True):
            pairs.append((_items(annotation.get("result"), control.name),
                          _items(prediction.get("result") if isinstance(prediction, dict) else [], control.name)))
    return scorer(pairs, model.labels, model.label_of)


def summary(report: dict) -> dict:
    """The few figures ``GET /versions`` and ``/training`` show of a report."""
    keep = ("metric", "score", "examples", "accuracy", "macro_f1", "calibration_error", "evaluated_at", "held_out")
    return {k: report[k] for k in keep if k in report}
