"""Cold-start patterns (PATTERNS_FILE): predictions before the first training, through the production server."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from lsbackend.patterns import Patterns
from lsbackend.service import Backend
from lsbackend.settings import SettingsError

import examples
from conftest import (
    EXAMPLES_CONFIG,
    MODEL_CLASS,
    SHAPE,
    captured,
    holdout_request,
    skip_unless_scored,
    training_events,
)
from harness import ServerProcess, wait_for_training

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]
TEXT_MODEL = SHAPE in ("text", "ner")  # patterns match text: other models refuse them at /setup


def text_of(data: dict) -> str:
    return next(v for v in data.values() if isinstance(v, str))


def write_patterns(path: Path) -> Path:
    """Patterns that name exactly the holdout's answers: each labeled text (or entity) as a keyword."""
    lines = []
    for data, answer in examples.holdout():
        text = text_of(data) if isinstance(data, dict) else ""
        if isinstance(answer, str):
            lines.append({"label": answer, "keyword": text.upper()})  # keywords ignore case
        else:
            lines += [{"label": label, "keyword": entity} for entity, label in answer]  # (text, label) entities
    if not lines:  # a model over images: any pattern will do to see it refused
        lines = [{"label": "x", "regex": "x"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.skipif(not TEXT_MODEL, reason="patterns are for text models; see the test below for the others")
def test_patterns_predict_before_the_first_training_through_the_production_server(tmp_path):
    patterns = write_patterns(tmp_path / "patterns.jsonl")
    version = Patterns.load(str(patterns)).version
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "models"), "TRAIN_DEBOUNCE_SECONDS": "0.3",
           "LABEL_CONFIG": str(EXAMPLES_CONFIG), "PATTERNS_FILE": str(patterns)}
    server = ServerProcess([sys.executable, "-m", "lsbackend", "start"], tmp_path / "server.log", env)
    try:
        assert server.call("POST", "/setup", captured(f"setup_{SHAPE}"))[2] == {"model_version": version}
        results = server.call("POST", "/predict", holdout_request())[2]["results"]
        assert [examples.predicted_label(r) for r in results] == [a for _, a in examples.holdout()]
        assert {r["model_version"] for r in results} == {version}  # an empty answer too: one version to filter on
        assert all(0 < r["score"] <= 0.5 for r in results if r["result"])  # below a trained model's confident ones
        for event in training_events():
            assert server.call("POST", "/webhook", event)[0] == 200
        server.call("POST", "/webhook", captured(f"webhook_start_training_{SHAPE}"))
        trained = wait_for_training(lambda: server.call("GET", f"/training/{PROJECT}")[2],
                                    context=server.log.read_text)
        assert trained["state"] == "succeeded", trained
        results = server.call("POST", "/predict", holdout_request())[2]["results"]
        assert {r["model_version"] for r in results} == {trained["model_version"]}  # the model alone now
    finally:
        server.stop()


@pytest.mark.skipif(not TEXT_MODEL, reason="patterns are for text models; see the test below for the others")
def test_patterns_merge_fills_what_a_trained_model_left_out(settings, tmp_path, config):
    patterns = write_patterns(tmp_path / "patterns.jsonl")
    merged = dataclasses.replace(settings, patterns_file=str(patterns), patterns_merge=True)
    tasks = holdout_request()["tasks"]
    for merge, backend in ((False, Backend(MODEL_CLASS, dataclasses.replace(merged, patterns_merge=False))),
                           (True, Backend(MODEL_CLASS, merged))):
        trained = backend.train(PROJECT, [{"id": e["annotation"]["id"], "result": e["annotation"]["result"],
                                           "task": e["task"]} for e in training_events()])
        skip_unless_scored([r["result"] for r in backend.predict(PROJECT, config, tasks)])
        backend.setup(PROJECT, config, {"score_threshold": 1.0})  # the model keeps nothing back
        results = backend.predict(PROJECT, config, tasks)
        if merge:
            assert [examples.predicted_label(r) for r in results] == [a for _, a in examples.holdout()]
            assert {r["model_version"] for r in results if r["result"]} == {Patterns.load(str(patterns)).version}
        else:
            assert all(not r["result"] and r["model_version"] == trained["model_version"] for r in results)


@pytest.mark.skipif(TEXT_MODEL, reason="text models use patterns: see the tests above")
def test_a_model_over_other_data_refuses_patterns_at_setup(settings, tmp_path, config):
    backend = Backend(MODEL_CLASS, dataclasses.replace(settings, patterns_file=str(write_patterns(tmp_path / "p"))))
    with pytest.raises(Exception, match="PATTERNS_FILE needs <Choices> or <Labels> over <Text>"):
        backend.setup(PROJECT, config)


@pytest.mark.parametrize(("content", "problem"), [
    ('{"label": "A", "keyword": "x"}\nnot json', "line 2 is not JSON"),
    ('{"keyword": "x"}', 'line 1: each line must be a JSON object with a "label"'),
    ('{"label": "A"}', 'give one non-empty "keyword" or "regex"'),
    ('{"label": "A", "regex": "(unclosed"}', "does not compile"),
    ('{"label": "A", "pattern": [{"lower": "x"}]}', "token lists are not supported"),
    ("\n\n", "holds no patterns"),
])
def test_a_bad_patterns_file_stops_the_start_naming_the_line_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "patterns.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match=problem) as caught:
        Patterns.load(str(path))
    assert "PATTERNS_FILE=" in str(caught.value)


def test_keywords_match_whole_words_and_the_version_follows_the_file(tmp_path):
    path = tmp_path / "patterns.jsonl"
    path.write_text('{"label": "A", "keyword": "love it"}\n', encoding="utf-8")
    first = Patterns.load(str(path))
    regex = first.patterns[0].regex
    assert regex.search("I LOVE  it!") and not regex.search("I love items") and not regex.search("glove it")
    path.write_text('{"label": "A", "keyword": "love"}\n', encoding="utf-8")
    assert Patterns.load(str(path)).version != first.version and first.version.startswith("patterns-")
