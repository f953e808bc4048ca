"""Bad input that test_server.py does not try: each case must get a specific 4xx, never a 5xx.

Several of these were 500s (or worse) before the runtime was fixed; the test names say what broke.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import re
import resource
import time

import pytest

from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings

import examples
from conftest import (
    EXAMPLES_CONFIG,
    MODEL_CLASS,
    SHAPE,
    annotation_event,
    captured,
    training_events,
    wait_for_training,
)

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]
DATA_KEY = "image" if SHAPE in ("image", "detection") else "text"

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<View><Text name=\"text\" value=\"$text\"/>&lol9;</View>"
)
QUADRATIC_BLOWUP = '<!DOCTYPE v [<!ENTITY a "' + "x" * 50_000 + '">]><View>' + "&a;" * 20_000 + "</View>"
EXTERNAL_ENTITY = '<!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]><View>&e;</View>'


def reason(response) -> str:
    return response.status.split(" ", 1)[1]


def predict_body(data: dict, **extra) -> dict:
    body = captured(f"predict_{SHAPE}")
    body["tasks"] = [{**body["tasks"][0], "id": 7, "data": data}]
    body.update(extra)
    return body


# --- /predict ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [5, 1.5, None, True, ["a", "b"], {"nested": "x"}])
def test_non_string_task_data_is_a_422_naming_the_task_and_field(client, value):
    response = client.post("/predict", json=predict_body({DATA_KEY: value}))
    assert response.status_code == 422, response.get_json()
    assert reason(response).startswith("Task 7 ") and repr(DATA_KEY) in reason(response)


def test_a_request_over_the_size_limit_is_a_413_naming_the_setting(tmp_path):
    settings = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG, max_request_bytes=1024 * 1024)
    client = create_app(Backend(MODEL_CLASS, settings)).test_client()
    body = json.dumps(predict_body({DATA_KEY: "x" * (1024 * 1024 + 1)}))
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 413
    assert reason(response) == "Request larger than 1 MB; raise MAX_REQUEST_MB or send fewer tasks"
    just_under = json.dumps(predict_body({DATA_KEY: "x" * 1000}))
    assert client.post("/predict", data=just_under, content_type="application/json").status_code == 200


@pytest.mark.parametrize(
    "config, expected",
    [
        ("<View", "Labeling config is not valid XML: "),
        ("<View><Text name='t' value='$text'/></Vew>", "Labeling config is not valid XML: mismatched tag"),
        ("<View><Text name='t' value='$text'/></View>", "Labeling config does not fit: needs "),
        (
            '<View><Image name="i" value="$i"/><PolygonLabels name="b" toName="i"><Label value="A"/>'
            "</PolygonLabels></View>",
            "Labeling config does not fit: needs ",
        ),
        (EXTERNAL_ENTITY, "Labeling config must not contain a DOCTYPE or entities"),
    ],
)
def test_a_bad_label_config_in_predict_is_a_422(client, config, expected):
    response = client.post("/predict", json=predict_body({DATA_KEY: "hello"}, label_config=config))
    assert response.status_code == 422
    assert reason(response).startswith(expected), reason(response)


def test_predict_with_no_config_anywhere_is_a_422_saying_where_to_put_one(tmp_path):
    settings = Settings(model_dir=tmp_path, label_config_path=tmp_path / "missing.xml")
    client = create_app(Backend(MODEL_CLASS, settings)).test_client()
    body = predict_body({DATA_KEY: "hello"})
    body.pop("label_config", None)
    response = client.post("/predict", json=body)
    assert response.status_code == 422  # was a 500 "Internal error: ValueError"
    assert reason(response) == "No labeling config for this project"
    assert "label_config.xml" in response.get_json()["detail"]


# --- /setup --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, QUADRATIC_BLOWUP], ids=["billion-laughs", "quadratic-blowup"])
def test_an_entity_expansion_bomb_in_setup_is_refused_before_it_expands(client, bomb):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    body = captured(f"setup_{SHAPE}")
    body["schema"] = bomb
    response = client.post("/setup", json=body)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert response.status_code == 422
    assert reason(response) == "Labeling config must not contain a DOCTYPE or entities"
    assert grown_kib < 100 * 1024, f"peak memory grew by {grown_kib} KiB: the entities were expanded"


def test_a_deeply_nested_config_is_a_422_not_a_recursion_error(client):
    body = captured(f"setup_{SHAPE}")
    body["schema"] = "<View>" * 5000 + "</View>" * 5000
    response = client.post("/setup", json=body)
    assert response.status_code == 422  # was "500 Internal error: RecursionError"
    assert reason(response) == "Labeling config has no object tag to label"


def test_a_config_with_a_lone_surrogate_is_a_422(client):
    body = captured(f"setup_{SHAPE}")
    body["schema"] = body["schema"].replace("<View>", "<View>\ud800", 1)
    response = client.post("/setup", json=body)
    assert response.status_code == 422  # was "500 Internal error: UnicodeEncodeError"
    assert reason(response).startswith("Labeling config is not valid text: unpaired surrogate")


# --- /webhook ------------------------------------------------------------------------------------
def test_annotation_deleted_singular_removes_the_annotation(client, backend):
    event = training_events(1)[0]
    client.post("/webhook", json=event)
    assert backend.store(PROJECT).count_annotations() == 1
    deleted = {"action": "ANNOTATION_DELETED", "project": {"id": int(PROJECT)},
               "annotation": {"id": event["annotation"]["id"]}}
    response = client.post("/webhook", json=deleted)
    assert response.get_json() == {"status": "deleted", "annotations": [event["annotation"]["id"]]}
    assert backend.store(PROJECT).count_annotations() == 0


@pytest.mark.parametrize("bad_id", ["../../../escaped", "1/../../2", 1.5, True, -3, None, [1]])
def test_an_annotation_id_that_is_not_a_number_is_refused_and_writes_nothing(client, settings, bad_id):
    event = training_events(1)[0]
    event["annotation"]["id"] = bad_id
    response = client.post("/webhook", json=event)
    assert response.status_code == 400  # "../../../escaped" used to write MODEL_DIR/escaped.json
    assert reason(response) == f"'annotation.id' must be an integer from 0 to {2**63 - 1}"
    assert [p for p in settings.model_dir.rglob("*.json") if p.name != "label_config.xml"] == []


@pytest.mark.parametrize("result", ["Positive", {"choices": ["Positive"]}, [1, 2]])
def test_an_annotation_result_that_is_not_a_list_of_objects_is_refused(client, backend, result):
    event = training_events(1)[0]
    event["annotation"]["result"] = result
    response = client.post("/webhook", json=event)
    assert response.status_code == 400
    assert reason(response) == "'annotation.result' must be a list of result objects"
    assert backend.store(PROJECT).count_annotations() == 0


@pytest.mark.slow


def test_malformed_result_items_do_not_break_training(client):
    """One odd annotation recorded from a webhook must not make every later training fail."""
    events = training_events()
    control = events[0]["annotation"]["result"][0]["from_name"]
    odd = [
        [{"from_name": control, "value": "junk"}],
        [{"from_name": control, "value": {"choices": "not-a-list", "labels": 5}}],
        [{"from_name": control, "value": {"choices": [None, 3]}}],
    ]
    for i, result in enumerate(odd):
        events.append(annotation_event(900 + i, events[0]["task"]["data"], result))
    for event in events:
        assert client.post("/webhook", json=event).status_code == 200
    client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    assert wait_for_training(client, PROJECT)["state"] == "succeeded"


@pytest.mark.parametrize("raw_id", ["Infinity", "-Infinity", "NaN", "1e400", '"abc"', "{}"])
def test_deleting_an_unparseable_annotation_id_deletes_nothing(client, raw_id):
    raw = '{"action": "ANNOTATIONS_DELETED", "project": 1, "annotations": [{"id": ' + raw_id + "}]}"
    response = client.post("/webhook", data=raw, content_type="application/json")
    assert response.status_code == 200  # Infinity was "500 Internal error: OverflowError"
    assert response.get_json() == {"status": "deleted", "annotations": []}


def test_lone_surrogates_anywhere_in_a_webhook_are_answered(client, backend):
    assert client.post("/webhook", json={"action": "\ud800"}).status_code == 200  # was a 500 on the echo
    body = {"action": "PROJECT_UPDATED", "project": {"id": int(PROJECT), "label_config": "<View>\udfff</View>"}}
    assert client.post("/webhook", json=body).status_code == 200  # was a 500 storing the config
    event = training_events(1)[0]
    event["task"]["data"] = {k: "\ud83d text" for k in event["task"]["data"]}
    assert client.post("/webhook", json=event).status_code == 200  # was a 500 storing the annotation
    assert backend.store(PROJECT).count_annotations() == 1


# --- secrets and request bodies never reach logs or error answers ---------------------------------
SECRETS = {
    "BASIC_AUTH_PASS": "pw-Zq81xPASS",
    "LABEL_STUDIO_API_KEY": "key-Lk3vAPIKEY",
    "access_token": "tok-Hh27ACCESS",
    "body": "BODY-MARKER-do-not-log",
}


@pytest.mark.slow


def test_secrets_and_bodies_stay_out_of_logs_and_error_answers(tmp_path, caplog, capfd):
    settings = Settings(
        model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG, train_debounce_seconds=0.05,
        basic_auth_user="ls", basic_auth_pass=SECRETS["BASIC_AUTH_PASS"],
        label_studio_url="http://127.0.0.1:9", label_studio_api_key=SECRETS["LABEL_STUDIO_API_KEY"],
    )
    backend = Backend(MODEL_CLASS, settings)
    client = create_app(backend).test_client()
    good = {"Authorization": "Basic " + base64.b64encode(f"ls:{SECRETS['BASIC_AUTH_PASS']}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(f"ls:{SECRETS['BASIC_AUTH_PASS']}x".encode()).decode()}
    marker = SECRETS["body"]
    setup = captured(f"setup_{SHAPE}")
    setup.update(access_token=SECRETS["access_token"], extra_params={"note": marker})
    bad_setup = dict(setup, schema=f"<View><{marker}/></View>")
    bomb = dict(setup, schema=BILLION_LAUGHS)
    event = training_events(1)[0]
    event["task"]["data"] = {k: f"{marker} {v}" for k, v in event["task"]["data"].items()}
    bad_event = dict(event, task=None)
    calls = [
        ("post", "/setup", setup), ("post", "/setup", bad_setup), ("post", "/setup", bomb),
        ("post", "/predict", predict_body({DATA_KEY: marker})),
        ("post", "/predict", predict_body({DATA_KEY: 5, "x": marker})),
        ("post", "/predict", predict_body({DATA_KEY: marker}, label_config=f"<{marker}")),
        ("post", "/predict", {"tasks": marker, "access_token": SECRETS["access_token"]}),
        ("post", "/webhook", event), ("post", "/webhook", bad_event),
        ("post", "/webhook", {"action": marker, "project": {"id": marker}}),
        ("post", "/train", {"project": PROJECT, "access_token": SECRETS["access_token"]}),
        ("post", f"/predict/{marker}", {}), ("get", "/training/!bad", None), ("get", "/metrics", None),
    ]
    answers = []
    with caplog.at_level(logging.DEBUG):
        for method, path, body in calls:
            for headers in (good, wrong, {}):
                response = getattr(client, method)(path, json=body, headers=headers)
                assert response.status_code < 500, (path, response.status)
                answers.append(response.status + response.get_data(as_text=True))
        client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"), headers=good)
        deadline = time.monotonic() + 60
        while backend.status(PROJECT)["state"] not in ("succeeded", "failed", "skipped"):
            assert time.monotonic() < deadline, "training did not finish"
            time.sleep(0.05)  # it fails (one annotation, Label Studio unreachable) and logs why
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    logged += capfd.readouterr().err  # the training ran in a child process, which logs to the inherited stderr
    assert "Label Studio" in logged  # the unreachable API was logged, so the log was really captured
    for name, secret in SECRETS.items():
        assert secret not in logged, f"{name} appeared in the log"
        if name != "body":
            assert all(secret not in a for a in answers), f"{name} appeared in a response"


@pytest.mark.parametrize("project", [True, False, [1], {"id": "../x"}, "1/2", "x" * 65])
def test_a_project_that_is_not_an_id_is_a_400(client, project):
    body = captured(f"setup_{SHAPE}")
    body["project"] = project
    response = client.post("/setup", json=body)
    assert response.status_code == 400  # True used to become project "True"
    assert reason(response).endswith("is not a Label Studio project id")


def test_train_refuses_a_label_config_that_is_not_a_string(client):
    response = client.post("/train", json={"project": PROJECT, "label_config": {"xml": "<View/>"}})
    assert response.status_code == 400  # was silently ignored and training queued
    assert reason(response) == "'label_config' must be a string"


def test_a_crash_logs_the_traceback_but_not_the_request(client, backend, monkeypatch, caplog):
    def crash(*args, **kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(backend, "predict", crash)
    body = predict_body({DATA_KEY: SECRETS["body"]}, access_token=SECRETS["access_token"])
    with caplog.at_level(logging.DEBUG):
        response = client.post("/predict", json=body)
    assert response.status_code == 500 and reason(response) == "Internal error: RuntimeError"
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "model exploded" in logged  # the log explains the crash
    assert SECRETS["body"] not in logged and SECRETS["access_token"] not in logged
    assert "model exploded" not in response.get_data(as_text=True)  # details stay in the log


# --- JSON depth, body size, id ranges, project ids, auth scheme (issue 12: "Errors" and "Lower") ------
@pytest.mark.parametrize(
    "raw",
    ["[" * 100_000, '{"tasks": ' + "[" * 5_000 + "]" * 5_000 + "}",
     '{"tasks": [{"data": ' + '{"a": ' * 150 + "1" + "}" * 150 + "}]}"],
    ids=["100000-deep-unclosed", "5000-deep", "150-deep-task-data"],
)
def test_deeply_nested_json_is_a_400_naming_the_depth_limit(client, raw):
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code == 400, response.status  # 100000 deep was "500 Internal error: RecursionError"
    assert reason(response) == "Request JSON is nested more than 100 levels deep"
    assert "MAX_JSON_DEPTH" in response.get_json()["detail"]


def test_json_nested_within_the_limit_is_answered(client, tmp_path):
    nested = {"a": 1}
    for _ in range(90):
        nested = {"a": nested}
    response = client.post("/predict", json=predict_body({DATA_KEY: "hello", "extra": nested}))
    assert response.status_code == 200, response.status
    deeper = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG, max_json_depth=3)
    shallow_client = create_app(Backend(MODEL_CLASS, deeper)).test_client()
    refused = shallow_client.post("/predict", json=predict_body({DATA_KEY: "hello"}))
    assert reason(refused) == "Request JSON is nested more than 3 levels deep"  # the setting is the limit


def test_a_chunked_body_over_the_size_limit_is_a_413(tmp_path):
    settings = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG, max_request_bytes=1024 * 1024)
    client = create_app(Backend(MODEL_CLASS, settings)).test_client()
    body = json.dumps(predict_body({DATA_KEY: "x" * (2 * 1024 * 1024)})).encode()
    response = client.post(  # no Content-Length: how a chunked request reaches the app under gunicorn
        "/predict", input_stream=io.BytesIO(body), content_type="application/json",
        headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413, response.status  # was "400 Request body is not valid JSON"
    assert reason(response) == "Request larger than 1 MB; raise MAX_REQUEST_MB or send fewer tasks"


@pytest.mark.parametrize("raw_id", [str(2**63), "1" + "0" * 400, "1e300"])
def test_an_annotation_id_beyond_label_studios_range_is_a_400(client, settings, raw_id):
    event = json.dumps(training_events(1)[0]).replace('"id": 1000,', f'"id": {raw_id},', 1)
    assert raw_id in event
    response = client.post("/webhook", data=event, content_type="application/json")
    assert response.status_code == 400, response.status  # 10**400 was a 500 (file name too long)
    assert reason(response) == f"'annotation.id' must be an integer from 0 to {2**63 - 1}"
    assert [p for p in settings.model_dir.rglob("*.json") if "annotations" in p.parts] == []


@pytest.mark.parametrize("raw_id", ["true", "4300.9", '"4300"', "1e300", "1" + "0" * 400, str(2**63)])
def test_deleting_with_an_id_that_create_refuses_deletes_nothing(client, backend, raw_id):
    for annotation_id in (1, 4300):
        event = training_events(1)[0]
        event["annotation"]["id"] = annotation_id
        assert client.post("/webhook", json=event).status_code == 200
    raw = '{"action": "ANNOTATIONS_DELETED", "project": ' + PROJECT + ', "annotations": [{"id": ' + raw_id + "}]}"
    response = client.post("/webhook", data=raw, content_type="application/json")
    assert response.status_code == 200, response.status
    assert response.get_json() == {"status": "deleted", "annotations": []}  # true deleted 1, 4300.9 deleted 4300
    assert backend.store(PROJECT).count_annotations() == 2


@pytest.mark.parametrize("raw_project", ["Infinity", "-Infinity", "NaN", '"5\\n"', '{"id": "5\\n"}'])
def test_a_project_id_with_a_newline_or_infinity_is_a_400(client, settings, raw_project):
    body = json.dumps(captured(f"setup_{SHAPE}")).replace(json.dumps(captured(f"setup_{SHAPE}")["project"]),
                                                          raw_project)
    response = client.post("/setup", data=body, content_type="application/json")
    assert response.status_code == 400, response.status  # Infinity became project "inf", "5\n" a folder "5\n"
    assert reason(response).endswith("is not a Label Studio project id")
    assert not (settings.model_dir / "projects").exists() or list((settings.model_dir / "projects").iterdir()) == []


def test_a_project_id_with_a_newline_in_the_status_url_is_a_400(client):
    response = client.get("/training/5%0A")
    assert response.status_code == 400  # answered 200 for a project named "5\n"


def test_predict_uses_project_0s_own_config(client):
    setup = captured(f"setup_{SHAPE}")
    renamed = setup["schema"].replace(f'value="${DATA_KEY}"', 'value="$zero_field"')
    assert renamed != setup["schema"]
    assert client.post("/setup", json={**setup, "project": 0, "schema": renamed}).status_code == 200
    body = predict_body({DATA_KEY: "hello"}, project=0)
    body.pop("label_config", None)
    for task in body["tasks"]:
        task.pop("project", None)
    response = client.post("/predict", json=body)
    # project 0's config reads $zero_field; it was ignored (0 is falsy) and the default config answered 200
    assert response.status_code == 422, response.status
    assert reason(response) == "Task 7 has no data field 'zero_field'"


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
def test_the_basic_auth_scheme_name_is_case_insensitive(tmp_path, scheme):
    settings = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG,
                        basic_auth_user="ls", basic_auth_pass="s3cret")
    client = create_app(Backend(MODEL_CLASS, settings)).test_client()
    token = base64.b64encode(b"ls:s3cret").decode()
    response = client.post("/setup", json=captured(f"setup_{SHAPE}"), headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200, response.status  # RFC 7617; "basic" was a 401
    wrong = base64.b64encode(b"ls:guess").decode()
    refused = client.post("/setup", json=captured(f"setup_{SHAPE}"), headers={"Authorization": f"{scheme} {wrong}"})
    assert refused.status_code == 401


# --- per-annotation problems are skipped and counted, never a failed training (issue 12) ----------------
def _odd_values(value: dict) -> list[object]:
    """Result ``value`` shapes Label Studio never stores, for this variant's control."""
    common = ["junk", None, 5, [value], {}]
    if SHAPE == "ner":
        return common + [
            {**value, "text": 5}, {**value, "text": ["x"]}, {**value, "start": True}, {**value, "start": "0"},
            {**value, "end": None}, {**value, "end": 1.5}, {**value, "labels": "PER"}, {**value, "labels": ["NOPE"]},
            {**value, "labels": [None]}, {**value, "start": 10**6, "end": 10**6 + 5, "text": "zzqq"},
            {**value, "start": 10**30, "end": -(10**30)},
        ]
    if SHAPE == "detection":
        return common + [
            {**value, "rectanglelabels": "Square"}, {**value, "rectanglelabels": ["Nope"]}, {**value, "x": "1"},
            {**value, "width": 0}, {**value, "width": None}, {**value, "x": float("nan")}, {**value, "x": 150},
            {**value, "rotation": 30}, {**value, "rotation": "x"}, {**value, "rectanglelabels": ["Square", "Circle"]},
        ]
    return common + [{"choices": [5, None]}, {"choices": "Positive"}, {"choices": ["Not a label"]},
                     {"choices": [{"a": 1}]}, {"labels": 5}]


def _odd_task_data() -> list[dict]:
    odd: list[dict] = [{DATA_KEY: 5}, {DATA_KEY: None}, {DATA_KEY: ["a"]}, {DATA_KEY: {"x": 1}}, {"other": "x"}]
    if SHAPE in ("image", "detection"):  # strings the URL and path libraries refuse
        odd += [{DATA_KEY: ref} for ref in ("http://[::1/x.png", "a\x00b.png", "http://h:abc/x.png",
                                              "/data/a b\r\n.png", "\ud800", "https://exa mple.com/x.png")]
    return odd


@pytest.mark.slow


def test_training_skips_what_it_cannot_use_counts_it_and_names_it(settings):
    # nothing held out for scoring (EVAL_HOLDOUT=0): every odd annotation reaches fit, which must skip it
    client = create_app(Backend(MODEL_CLASS, dataclasses.replace(settings, eval_holdout=0.0))).test_client()
    events = training_events()
    good = events[0]["annotation"]["result"]
    odd = [annotation_event(900 + i, events[0]["task"]["data"], [{**good[0], "value": v}])
           for i, v in enumerate(_odd_values(good[0]["value"]))]
    odd += [{**annotation_event(950 + i, data, good)} for i, data in enumerate(_odd_task_data())]
    odd += [annotation_event(990, events[0]["task"]["data"], [{k: v for k, v in good[0].items() if k != "value"}])]
    for event in odd + events:
        assert client.post("/webhook", json=event).status_code == 200
    client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded", status  # a number as text, or text=5 in a span, failed every training
    assert status["skipped"]["count"] >= len(odd) - 1  # ({} as a value for a choice is simply no choice)
    odd_ids = {e["annotation"]["id"] for e in odd}
    examples_ = status["skipped"]["examples"]
    assert 1 <= len(examples_) <= 5
    assert all(int(e.split()[1]) in odd_ids for e in examples_), examples_  # "annotation <id> (task <id>): why"


def _aliased(config: str) -> str:
    """The variant's config with an alias on every label: Label Studio then stores the alias in results."""
    return re.sub(r'<(Choice|Label) value="([^"]+)"', r'<\1 value="\2" alias="a-\2"', config)


@pytest.mark.slow


def test_aliased_labels_train_on_the_alias_and_predict_it(client):
    setup = captured(f"setup_{SHAPE}")
    config = _aliased(setup["schema"])
    assert config.count('alias="a-') >= 2
    assert client.post("/setup", json={**setup, "schema": config}).status_code == 200
    for event in training_events():
        for item in event["annotation"]["result"]:
            key = next(k for k in ("choices", "labels", "rectanglelabels") if k in item["value"])
            item["value"][key] = [f"a-{label}" for label in item["value"][key]]
        event["project"] = {**event["project"], "label_config": config}  # Label Studio sends the project's config
        assert client.post("/webhook", json=event).status_code == 200
    start = captured(f"webhook_start_training_{SHAPE}")
    start["project"]["label_config"] = config
    client.post("/webhook", json=start)
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded", status  # the aliases matched no label: "needs 2 different labels"
    body = captured(f"predict_{SHAPE}")
    body["label_config"] = config
    body["tasks"] = [{**body["tasks"][0], "id": 500 + i, "data": d} for i, (d, _) in enumerate(examples.holdout())]
    results = client.post("/predict", json=body).get_json()["results"]
    stored = [v for r in results for item in r["result"] for key in ("choices", "labels", "rectanglelabels")
              for v in item["value"].get(key, [])]
    assert stored and all(v.startswith("a-") for v in stored)  # Label Studio expects the alias
    for result in results:
        for item in result["result"]:
            for key in ("choices", "labels", "rectanglelabels"):
                if key in item["value"]:
                    item["value"][key] = [v[2:] for v in item["value"][key]]
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
