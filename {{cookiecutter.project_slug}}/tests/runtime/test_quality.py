"""The quality loop: held-out scores of each version, the promotion rule after a training, evaluate, train-curve."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from lsbackend.evaluation import held_out_position, split
from lsbackend.quality import advice, evaluate
from lsbackend.scoring import score_boxes, score_choices, score_spans
from lsbackend.service import Backend
from lsbackend.settings import Settings

from conftest import SHAPE, captured, skip_unless_scored
from controlled_model import ControlledModel, control_dir
from test_cli import cli
from test_faults import annotations

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


def many_annotations(copies: int = 4) -> list[dict]:
    """The variant's examples several times over, each copy on tasks of its own (so some are held out)."""
    found = []
    for copy in range(copies):
        for a in annotations():
            found.append({**a, "id": a["id"] + 100_000 * copy,
                          "task": {**a["task"], "id": a["task"]["id"] + 100_000 * copy}})
    return found


@pytest.fixture
def quality_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, eval_holdout=0.3, eval_min_annotations=10)


def backend_with(settings: Settings, **changes: object) -> Backend:
    return Backend(ControlledModel, dataclasses.replace(settings, **changes))


def test_the_held_out_slice_is_the_same_tasks_every_time_and_grows_with_the_share():
    items = many_annotations()
    _, small = split(items, 0.2)
    _, large = split(items, 0.4)
    assert {a["id"] for a in small} < {a["id"] for a in large}
    assert split(items, 0.2)[1] == small
    both = [{"id": 1, "task": {"id": 7}}, {"id": 2, "task": {"id": 7}}]  # two annotations of one task
    assert held_out_position(both[0]) == held_out_position(both[1])
    assert 0.1 < len(large) / len(items) < 0.7


def test_a_worse_training_is_kept_but_not_served_and_the_status_says_why(quality_settings):
    backend = backend_with(quality_settings)
    first = backend.train(PROJECT, many_annotations())
    assert first["state"] == "succeeded" and first["promotion"]["promoted"], first
    assert first["held_out"] > 0 and first["promotion"]["score"]["score"] > 0.5, first
    (control_dir(quality_settings.model_dir) / "rotate").write_text("")
    worse = backend.train(PROJECT, many_annotations())
    assert worse["state"] == "succeeded", worse
    promotion = worse["promotion"]
    assert not promotion["promoted"] and "worse than the served version" in promotion["reason"], promotion
    assert promotion["previous"]["version"] == first["model_version"]
    assert promotion["score"]["score"] < promotion["previous"]["score"] - quality_settings.promote_margin
    status = backend.status(PROJECT)
    assert status["model_version"] == first["model_version"]  # still serving the better one
    assert status["promotion"]["promoted"] is False and status["promotion"]["version"] == worse["model_version"]
    listed = backend.versions(PROJECT)
    assert listed["current"] == first["model_version"]
    assert listed["versions"] == [worse["model_version"], first["model_version"]]  # kept, to use by hand
    metrics = backend.metrics.render().decode()
    assert f'lsbackend_trainings_not_promoted_total{{project="{PROJECT}"}} 1.0' in metrics
    assert f'project="{PROJECT}",version="{worse["model_version"]}"}} 1.0' not in metrics
    scores = listed["evaluations"]
    assert scores[worse["model_version"]]["score"] < scores[first["model_version"]]["score"]


def test_promote_rule_always_serves_the_new_version_whatever_its_score(quality_settings):
    backend = backend_with(quality_settings, promote_rule="always")
    first = backend.train(PROJECT, many_annotations())
    (control_dir(quality_settings.model_dir) / "rotate").write_text("")
    worse = backend.train(PROJECT, many_annotations())
    assert worse["promotion"] == {**worse["promotion"], "promoted": True, "reason": "PROMOTE_RULE=always"}
    assert backend.status(PROJECT)["model_version"] == worse["model_version"] != first["model_version"]


def test_a_training_as_good_as_the_served_one_is_promoted(quality_settings):
    backend = backend_with(quality_settings)
    first = backend.train(PROJECT, many_annotations())
    second = backend.train(PROJECT, many_annotations())
    assert second["promotion"]["promoted"] and "not worse than" in second["promotion"]["reason"], second
    assert backend.status(PROJECT)["model_version"] == second["model_version"] != first["model_version"]


def test_few_annotations_are_all_trained_on_and_the_version_says_it_has_no_held_out_score(settings):
    backend = backend_with(settings)  # the default EVAL_MIN_ANNOTATIONS is above the examples' count
    status = backend.train(PROJECT, annotations())
    assert status["held_out"] == 0 and status["promotion"]["promoted"], status
    assert backend.versions(PROJECT)["evaluations"] == {
        status["model_version"]: {"not_scored": "trained on every annotation (nothing held out)"}}


def choice(label: str, score: float | None = None) -> list[dict]:
    item = {"from_name": "c", "to_name": "t", "type": "choices", "value": {"choices": [label]}}
    return [item if score is None else {**item, "score": score}]


def span(start: int, end: int, label: str, score: float | None = None) -> dict:
    value = {"start": start, "end": end, "labels": [label]}
    item = {"from_name": "c", "to_name": "t", "type": "labels", "value": value}
    return item if score is None else {**item, "score": score}


def test_classification_scores_per_label_precision_recall_f1_and_accuracy():
    pairs = [(choice("A"), choice("A", 0.9)), (choice("A"), choice("B", 0.6)), (choice("B"), choice("B", 0.8)),
             (choice("B"), [])]
    report = score_choices(pairs, ["A", "B"], lambda v: v)
    assert report["accuracy"] == 0.5
    assert report["per_label"]["A"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_label"]["B"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["score"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))  # micro F1: P 2/3, R 1/2
    # scores 0.9 and 0.8 right, 0.6 wrong: bins 0.9 (|0.9-1|), 0.8 (|0.8-1|), 0.6 (|0.6-0|) over 3 items
    assert report["calibration_error"] == pytest.approx((0.1 + 0.2 + 0.6) / 3)


def test_named_entities_count_a_span_only_when_start_end_and_label_all_match():
    gold = [span(0, 5, "PER"), span(10, 15, "ORG")]
    predicted = [span(0, 5, "PER", 0.9), span(10, 14, "ORG", 0.7), span(20, 25, "LOC", 0.5)]
    report = score_spans([(gold, predicted)], ["PER", "ORG", "LOC"], lambda v: v)
    assert report["per_label"]["PER"]["f1"] == 1.0
    assert report["per_label"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["precision"] == pytest.approx(1 / 3) and report["recall"] == 0.5


def recorded_versions(settings: Settings) -> tuple[str, str, str]:
    """Record the examples as webhooks would, then train three versions: one on too few annotations to hold
    any out, one good, one deliberately worse (kept, not served)."""
    backend = backend_with(settings)
    store = backend.store(PROJECT)
    for annotation in many_annotations():
        store.save_annotation(annotation)
    few = backend.train(PROJECT, annotations()[: settings.eval_min_annotations - 1])
    good = backend.train(PROJECT)
    (control_dir(settings.model_dir) / "rotate").write_text("")
    worse = backend.train(PROJECT)
    (control_dir(settings.model_dir) / "rotate").unlink()
    assert few["held_out"] == 0 and good["held_out"] > 0 and not worse["promotion"]["promoted"], worse
    return few["model_version"], good["model_version"], worse["model_version"]


@pytest.mark.slow


def test_evaluate_scores_each_kept_version_on_tasks_none_was_trained_on(quality_settings, backend):
    few, good, worse = recorded_versions(quality_settings)
    proc = cli("evaluate", "--project", PROJECT, "--json", model_dir=quality_settings.model_dir)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    _, held_out = split(many_annotations(), quality_settings.eval_holdout)
    assert report["held_out"] == len(held_out) and report["current"] == good
    rows = {row["version"]: row for row in report["versions"]}
    assert "trained on every annotation" in rows[few]["not_scored"]
    assert rows[good]["score"] > rows[worse]["score"] + quality_settings.promote_margin
    assert set(rows[good]["per_label"]) >= set(backend.build_model(PROJECT, backend.label_config(PROJECT)).labels)
    assert sum(r["support"] for r in rows[good]["per_label"].values()) >= len(held_out)
    listed = backend_with(quality_settings).versions(PROJECT)["evaluations"]  # what GET /versions shows now
    assert listed[worse]["evaluated_at"] == rows[worse]["evaluated_at"]

    table = cli("evaluate", "--project", PROJECT, "--version", good, "--version", worse,
                model_dir=quality_settings.model_dir)
    assert table.returncode == 0, table.stderr
    assert f"* {good}" in table.stdout and f"  {worse}" in table.stdout and few not in table.stdout
    assert "precision" in table.stdout and "recall" in table.stdout


@pytest.mark.slow


def test_evaluate_names_an_unknown_version_and_a_project_without_annotations(quality_settings):
    recorded_versions(quality_settings)
    proc = cli("evaluate", "--project", PROJECT, "--version", "v99", model_dir=quality_settings.model_dir)
    assert proc.returncode == 1 and "'v99' is not kept" in proc.stderr and "versions --project" in proc.stderr
    empty = cli("evaluate", "--project", "4242", model_dir=quality_settings.model_dir)
    assert empty.returncode == 1 and "has no annotations to score against" in empty.stderr, empty.stderr


@pytest.mark.slow


def test_train_curve_trains_on_growing_shares_and_says_whether_more_labeling_helps(quality_settings):
    store = backend_with(quality_settings).store(PROJECT)
    for annotation in many_annotations():
        store.save_annotation(annotation)
    env = {"EVAL_HOLDOUT": "0.3"}
    proc = cli("train-curve", "--project", PROJECT, "--json", model_dir=quality_settings.model_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    trained_on, held_out = split(many_annotations(), 0.3)
    assert report["held_out"] == len(held_out)
    assert [p["share"] for p in report["points"]] == [0.25, 0.5, 0.75, 1.0]
    assert [p["annotations"] for p in report["points"]][-1] == len(trained_on)
    assert report["points"][-1]["score"] > 0.5 and report["advice"] == advice(report["points"])
    png = quality_settings.model_dir.parent / "curve.png"
    table = cli("train-curve", "--project", PROJECT, "--plot", str(png), model_dir=quality_settings.model_dir, env=env)
    assert " 100% " in table.stdout and report["advice"] in table.stdout
    if importlib.util.find_spec("matplotlib") is None:  # optional: the default install leaves it out
        assert table.returncode == 1 and "pip install matplotlib" in table.stderr
    else:
        assert table.returncode == 0 and png.read_bytes().startswith(b"\x89PNG")


def point(annotations: int, score: float) -> dict:
    return {"annotations": annotations, "score": score, "metric": "f1"}


def test_the_curve_advice_reads_the_last_step():
    assert advice([point(10, 0.6), point(20, 0.7), point(30, 0.8)]).startswith("Still improving")
    assert advice([point(10, 0.6), point(20, 0.8), point(30, 0.805)]).startswith("Flat")
    assert advice([point(10, 0.6), point(20, 0.8), point(30, 0.7)]).startswith("Worse with more data")
    assert advice([{"annotations": 5, "error": "ValueError"}, point(10, 0.5)]).startswith("Too few steps")


def test_scores_are_probabilities_on_one_scale_across_versions(quality_settings):
    """Active learning sorts tasks by prediction score across versions: a score must mean "right this often"."""
    backend = backend_with(quality_settings, promote_rule="always")
    store = backend.store(PROJECT)
    everything = many_annotations()
    for annotation in everything:
        store.save_annotation(annotation)
    smaller = backend.train(PROJECT, everything[: len(everything) // 2])
    larger = backend.train(PROJECT)
    tasks = [a["task"] for a in split(everything, quality_settings.eval_holdout)[1]]
    skip_unless_scored([prediction["result"] for prediction in backend.predict(PROJECT, None, tasks)])
    report = evaluate(backend, PROJECT)
    assert {row["version"] for row in report["versions"]} == {smaller["model_version"], larger["model_version"]}
    for row in report["versions"]:
        assert row["calibration_error"] is not None and row["calibration_error"] < 0.2, row
    for version in (smaller["model_version"], larger["model_version"]):
        backend.use_version(PROJECT, version)
        for prediction in backend.predict(PROJECT, None, tasks):
            items = [item["score"] for item in prediction["result"]]
            assert all(0.0 <= score <= 1.0 for score in [prediction["score"], *items]), prediction
            assert prediction["model_version"] == version


def box(x: float, y: float, w: float, h: float, label: str, score: float | None = None) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}
    item = {"from_name": "c", "to_name": "i", "type": "rectanglelabels", "value": value}
    return item if score is None else {**item, "score": score}


def test_detection_scores_map_at_iou_half_from_ranked_boxes():
    first = ([box(0, 0, 10, 10, "Car"), box(50, 50, 10, 20, "Person")],
             [box(1, 1, 10, 10, "Car", 0.9), box(70, 70, 10, 10, "Person", 0.8)])  # IoU 0.68: a hit; a miss
    second = ([box(20, 20, 10, 10, "Car")], [box(20, 20, 10, 10, "Car", 0.6), box(0, 0, 5, 5, "Car", 0.7)])
    report = score_boxes([first, second], ["Car", "Person"], lambda v: v)
    # Car ranked: 0.9 hit, 0.7 miss, 0.6 hit of 2 -> AP = 0.5 * 1 + 0.5 * 2/3; Person: AP 0
    assert report["per_label"]["Car"]["ap50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert report["per_label"]["Person"]["ap50"] == 0.0
    assert report["metric"] == "map50" and report["score"] == pytest.approx((0.5 + 0.5 * 2 / 3) / 2)
    assert report["per_label"]["Car"]["precision"] == pytest.approx(2 / 3) and report["per_label"]["Car"]["recall"] == 1
