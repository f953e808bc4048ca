"""The typed /predict reading: every task arrives whole, as a plain dict, whatever a model does with it."""

from __future__ import annotations

import copy
import json
import pickle

import orjson
import pytest

from lsbackend.predict_body import read_predict_body

from conftest import SHAPE, captured

BODY = captured(f"predict_{SHAPE}")


def _read(body: dict) -> tuple[dict, list[dict]]:
    read = read_predict_body(json.dumps(body).encode(), 100)
    assert read is not None
    return read


def test_fields_and_whole_tasks_in_label_studios_order():
    fields, tasks = _read(BODY)
    assert fields == {k: BODY[k] for k in ("project", "label_config", "params") if k in BODY}
    assert tasks == BODY["tasks"] and [list(t) for t in tasks] == [list(t) for t in BODY["tasks"]]
    assert all(type(t) is dict for t in tasks)


@pytest.mark.parametrize("dump", [
    lambda t: orjson.loads(orjson.dumps(t)), lambda t: json.loads(json.dumps(t)),
    lambda t: pickle.loads(pickle.dumps(t)), copy.deepcopy, lambda t: {**t},
])
def test_a_model_that_serializes_or_copies_a_task_gets_all_of_it(dump):
    """orjson reads a dict's storage directly: a task parsed on demand reached it as just id and data."""
    task = _read(BODY)[1][0]
    assert {"annotations", "meta"} <= set(BODY["tasks"][0])
    assert dump(task) == BODY["tasks"][0]


@pytest.mark.parametrize("raw", [
    b"[]", b'{"tasks": []}', b'{"tasks": {}}', b'{"tasks": [1]}', b'{"tasks": [{"id": 1}]}',
    b'{"tasks": [{"data": []}]}', b'{"tasks": [{"data": {"x": NaN}}]}', b'{"tasks": [{"data": {"x": "\\ud800"}}]}',
    b'{"tasks": [{"data": {"x": 1e400}}]}', b"not json", b'{"tasks": [{"data": {}}], "tasks": 5}',
])
def test_bodies_it_does_not_take_go_to_the_general_path(raw):
    assert read_predict_body(raw, 100) is None


def test_a_body_that_may_nest_too_deep_goes_to_the_general_path():
    """Fields the typed reading skips are still held to MAX_JSON_DEPTH: the general path refuses them."""
    body = json.dumps({"tasks": [{"data": {"text": [[1]]}}]}).encode()  # the innermost list is at depth 6
    assert read_predict_body(body, 6) is not None
    assert read_predict_body(body, 5) is None
    deep_params = json.dumps({"tasks": [{"data": {}}], "params": {"a": [[1]]}}).encode()  # depth 4
    assert read_predict_body(deep_params, 4) is not None and read_predict_body(deep_params, 3) is None
    assert read_predict_body(b'{"tasks": [{"data": {}, "meta": ' + b"[" * 3000 + b"]" * 3000 + b"}]}", 1000) is None
