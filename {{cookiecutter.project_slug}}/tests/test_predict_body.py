"""The typed /predict reading: tasks carry ``id`` and ``data`` at once and the rest of themselves on demand."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from lsbackend.predict_body import Task, read_predict_body

from conftest import SHAPE, captured

BODY = captured(f"predict_{SHAPE}")


def _read(body: dict) -> tuple[dict, list[Task]]:
    read = read_predict_body(json.dumps(body).encode(), 100)
    assert read is not None
    return read


def test_tasks_hold_only_id_and_data_until_more_is_asked():
    fields, tasks = _read(BODY)
    assert fields == {k: BODY[k] for k in ("project", "label_config", "params") if k in BODY}
    task = tasks[0]
    assert dict.__len__(task) == 2  # the ~18 other fields Label Studio sends are not built yet
    assert task["data"] == BODY["tasks"][0]["data"]
    assert task.get("id") == BODY["tasks"][0]["id"]
    assert dict.__len__(task) == 2


@pytest.mark.parametrize("use", [
    lambda t: t["meta"], lambda t: t.get("annotations"), lambda t: "project" in t, lambda t: list(t),
    lambda t: len(t), lambda t: dict(t), lambda t: {**t}, lambda t: t.items(), lambda t: t.copy(),
    lambda t: repr(t), lambda t: t == {}, lambda t: copy.deepcopy(t), lambda t: pickle.dumps(t),
])
def test_any_other_use_sees_the_whole_task_in_its_order(use):
    expected = BODY["tasks"][0]
    task = _read(BODY)[1][0]
    use(task)
    assert task == expected
    assert list(task) == list(expected)
    assert json.dumps(task) == json.dumps(expected)


def test_copies_are_plain_dicts_and_writes_before_completion_are_kept():
    task = _read(BODY)[1][0]
    task["data"] = {"text": "changed"}
    task["extra"] = 1
    assert task["meta"] == BODY["tasks"][0]["meta"]
    assert task["data"] == {"text": "changed"} and task["extra"] == 1
    assert type(copy.copy(task)) is dict and type(pickle.loads(pickle.dumps(task))) is dict
    with pytest.raises(KeyError):
        task["no such field"]


@pytest.mark.parametrize("raw", [
    b"[]", b'{"tasks": []}', b'{"tasks": {}}', b'{"tasks": [1]}', b'{"tasks": [{"id": 1}]}',
    b'{"tasks": [{"data": []}]}', b'{"tasks": [{"data": {}, "id": 1.5}]}', b'{"tasks": [{"data": {"x": NaN}}]}',
    b'{"tasks": [{"data": {"x": "\\ud800"}}]}', b'{"tasks": [{"data": {}, "id": 18446744073709551616}]}',
    b'{"tasks": [{"data": {"x": 1e400}}]}', b"not json",
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
