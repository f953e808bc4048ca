"""The quality benchmark runs end to end in a tiny setting and reports sane numbers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
SCRIPT = TEMPLATE / "bench" / "evaluate.py"


def load_evaluate():
    spec = importlib.util.spec_from_file_location("bench_evaluate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("variant", "metric"), [("text_classification", "accuracy"),
                                                  ("image_classification", "accuracy"),
                                                  ("text_classification__multilabel", "F1 (micro)"),
                                                  ("object_detection", "F1@0.5")])
def test_tiny_run_bakes_trains_and_reports_numbers_between_0_and_1(tmp_path, variant, metric):
    cmd = [sys.executable, str(SCRIPT), "--sizes", "10,20", "--variants", variant,
           "--seeds", "1", "--test-size", "20", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "evaluate.json").read_text(encoding="utf-8"))
    curve = report["results"][variant]["curve"]  # object detection adds its ONNX route rows
    assert [point["annotations"] for point in curve] == [10, 20]
    assert all(0.0 <= point[metric] <= 1.0 for point in curve)
    # image_classification is baked with its generator's LABEL_CONFIG; with the default Cat/Dog/Other
    # config every annotation's label would be unknown and fit would refuse.
    assert curve[-1]["fit_refused"] == 0
    assert f"| {variant} | {metric} |" in proc.stdout


def test_a_variant_without_a_data_generator_is_skipped_with_the_reason(tmp_path):
    for name in ("ready", "missing"):
        (tmp_path / "variants" / name).mkdir(parents=True)
        (tmp_path / "variants" / name / "model.py").write_text("")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "ready.py").write_text("")
    ready, skipped = load_evaluate().discover(tmp_path / "variants", tmp_path / "datasets")
    assert ready == ["ready"]
    assert skipped == {"missing": "no data generator: add bench/datasets/missing.py (METRIC, make, score)"}


def test_a_variant_scenario_is_measured_on_its_variant_baked_with_its_config(tmp_path):
    for name in ("text", "image"):
        (tmp_path / "variants" / name).mkdir(parents=True)
        (tmp_path / "variants" / name / "model.py").write_text("")
    (tmp_path / "datasets").mkdir()
    for name in ("text", "text__multilabel", "image__multilabel"):
        (tmp_path / "datasets" / f"{name}.py").write_text("")
    evaluate = load_evaluate()
    ready, skipped = evaluate.discover(tmp_path / "variants", tmp_path / "datasets")
    assert ready == ["image__multilabel", "text", "text__multilabel"] and list(skipped) == ["image"]
    assert evaluate.variant_of("text__multilabel") == "text"
    multilabel = evaluate.load_dataset("text_classification__multilabel")
    assert 'choice="multiple"' in multilabel.LABEL_CONFIG


def test_an_unknown_variant_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit, match="unknown variant\\(s\\) speech; the template has: .*text_classification"):
        load_evaluate().choose("speech")


@pytest.mark.parametrize("name", ["text_classification", "ner", "image_classification",
                                  "text_classification__multilabel", "image_classification__multilabel",
                                  "object_detection"])
def test_every_data_generator_is_seeded_and_scores_perfect_answers_as_1(name, monkeypatch):
    # detection is scored with the baked runtime's lsbackend.boxes; the template's copy is the same file
    monkeypatch.syspath_prepend(str(TEMPLATE / "{{cookiecutter.project_slug}}"))
    dataset = load_evaluate().load_file(TEMPLATE / "bench" / "datasets" / f"{name}.py", f"dataset_{name}")
    train, test = dataset.make(5, 8, seed=3)
    assert (train, test) == dataset.make(5, 8, seed=3) and len(train) == 5 and len(test) == 8
    assert dataset.make(5, 8, seed=4) != (train, test)
    perfect = [{"result": _answer(name, truth)} for _, truth in test]
    assert dataset.score(perfect, [truth for _, truth in test])[dataset.METRIC] == 1.0
    assert dataset.score([{"result": []} for _ in test], [truth for _, truth in test])[dataset.METRIC] == 0.0


def _answer(name: str, truth) -> list[dict]:
    if name == "object_detection":
        width, height, objects = truth
        return [{"score": 0.9, "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                                         "height": 100 * (y2 - y1) / height, "rectanglelabels": [label]}}
                for label, (x1, y1, x2, y2) in objects]
    if name.endswith("__multilabel"):
        return [{"value": {"choices": truth}}]
    if name in ("text_classification", "image_classification"):
        return [{"value": {"choices": [truth]}}]
    return [{"value": {"start": s, "end": e, "labels": [label]}} for s, e, label in truth]


def test_the_onnx_route_gets_rows_with_and_without_learnt_thresholds_for_a_users_export(tmp_path):
    export = load_evaluate().load_file(TEMPLATE / "bench" / "yolo_standin.py", "standin").build(tmp_path / "mine.onnx")
    cmd = [sys.executable, str(SCRIPT), "--sizes", "5,10", "--variants", "object_detection", "--seeds", "1",
           "--test-size", "10", "--onnx", str(export), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "evaluate.json").read_text(encoding="utf-8"))["results"]
    rows = ["object_detection ONNX, default threshold", "object_detection ONNX, learned thresholds"]
    assert set(rows) <= set(results)
    for row in rows:
        assert results[row]["detector"] == "mine.onnx"
        curve = results[row]["curve"]
        assert [point["annotations"] for point in curve] == [5, 10]
        assert all(0.0 <= point[m] <= 1.0 for point in curve for m in ("F1@0.5", "precision@0.5", "mAP@0.5"))
        assert all(point["fit_refused"] == 0 for point in curve)
        assert f"| {row} | F1@0.5 |" in proc.stdout
    # without fit the export serves the same boxes whatever the number of annotations
    before = results[rows[0]]["curve"]
    assert before[0]["F1@0.5"] == before[1]["F1@0.5"]


def test_the_onnx_route_is_skipped_with_the_reason_for_a_missing_export_or_none(tmp_path):
    evaluate = load_evaluate()
    assert evaluate.onnx_detector(str(tmp_path / "gone.onnx"), tmp_path) == (
        f"--onnx {tmp_path / 'gone.onnx'}: no such file (a YOLO model exported to ONNX)")
    assert evaluate.onnx_detector("none", tmp_path) == "left out with --onnx none"
    assert evaluate.onnx_detector("", tmp_path) == tmp_path / "yolo_standin.onnx"


def _scene(colour=None) -> np.ndarray:
    """A letterboxed-looking input: a flat picture (grey padding above and below), and a square if ``colour``."""
    pixels = np.full((1, 3, 160, 160), 114 / 255, dtype=np.float32)
    pixels[:, :, 20:140, :] = np.array([0.2, 0.5, 0.3], dtype=np.float32)[:, None, None]
    if colour is not None:
        pixels[:, :, 60:90, 100:130] = np.array(colour, dtype=np.float32)[:, None, None]
    return pixels


def test_the_onnx_stand_in_reads_the_picture_and_boxes_what_is_in_it(tmp_path):
    path = load_evaluate().load_file(TEMPLATE / "bench" / "yolo_standin.py", "standin").build(tmp_path / "s.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["names"] == "{0: 'square', 1: 'circle'}" and metadata["imgsz"] == "[160, 160]"
    (empty,), (square,), (other,) = (session.run(None, {"images": _scene(c)})[0] for c in (None, (0.9, 0.1, 0.8),
                                                                                            (0.9, 0.9, 0.1)))
    assert square.shape == (6, empty.shape[1]) and not np.allclose(square, empty)
    assert not np.allclose(square[4:], other[4:])  # another colour, other scores: no constant output
    assert empty[4:].max() < 0.25  # a flat picture holds nothing worth the default threshold
    best = square[:, square[4:].max(axis=0).argmax()]  # cx, cy, w, h of the best anchor, then its scores
    assert abs(best[0] - 115) <= 2 and abs(best[1] - 75) <= 2 and 24 <= best[2] <= 36 and best[4:].max() > 0.5
