"""The HTTP protocol, driven with requests captured from Label Studio 1.23.

Each "Behaviour that shapes the backend" point of the protocol notes has a test here.
"""

from __future__ import annotations

import base64

import pytest

from lsbackend.errors import Unavailable
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings

import examples
from conftest import (
    EXAMPLES_CONFIG,
    MODEL_CLASS,
    SHAPE,
    captured,
    holdout_request,
    training_events,
    wait_for_training,
)

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


def train(client) -> dict:
    for event in training_events():
        assert client.post("/webhook", json=event).status_code == 200
    response = client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    assert response.status_code == 201, response.get_json()
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded", status
    return status


def test_health_and_root_answer_without_loading_a_model(client, backend):
    for path in ("/health", "/"):
        response = client.get(path)
        assert response.status_code == 200 and response.get_json()["status"] == "UP"
    assert backend._models == {}


def test_setup_returns_the_current_version_and_loads_nothing(client, backend):
    response = client.post("/setup", json=captured(f"setup_{SHAPE}"))
    assert response.status_code == 200
    assert response.get_json() == {"model_version": "untrained"}
    assert backend._models == {}


def test_untrained_predict_gives_one_empty_result_per_task(client):
    body = captured(f"predict_{SHAPE}")
    results = client.post("/predict", json=body).get_json()["results"]
    assert len(results) == len(body["tasks"])
    # a model that loads media first answers a task whose media failed with its reason (a "+media-error" version)
    assert all(r["result"] == [] and r["model_version"] in ("untrained", "untrained+media-error") for r in results)


@pytest.mark.slow


def test_version_from_setup_matches_predictions_and_changes_only_with_training(client):
    """Label Studio re-predicts a task only when /setup's version differs from its prediction's."""
    setup = lambda: client.post("/setup", json=captured(f"setup_{SHAPE}")).get_json()["model_version"]  # noqa: E731
    before = setup()
    assert setup() == before
    status = train(client)
    after = setup()
    assert after != before and after == status["model_version"]
    results = client.post("/predict", json=holdout_request()).get_json()["results"]
    assert {r["model_version"] for r in results} == {after}
    assert setup() == after


@pytest.mark.slow


def test_trained_predictions_agree_with_held_out_labels(client):
    train(client)
    results = client.post("/predict", json=holdout_request()).get_json()["results"]
    truth = [label for _, label in examples.holdout()]
    predicted = [examples.predicted_label(r) for r in results]
    assert predicted == truth


def test_a_large_batch_gets_exactly_one_result_per_task_in_order(client):
    body = captured(f"predict_{SHAPE}")
    base = body["tasks"][0]
    body["tasks"] = [{**base, "id": i} for i in range(250)]
    results = client.post("/predict", json=body).get_json()["results"]
    assert isinstance(results, list) and len(results) == 250
    assert all("result" in r for r in results)


def test_interactive_predict_with_context_answers(client):
    """Opening a task with interactive pre-annotation sends one task and a context."""
    if SHAPE == "text":
        body = captured("predict_text_interactive")
    else:  # the same shape as the text capture, with this variant's task
        body = captured(f"predict_{SHAPE}")
        body["tasks"] = body["tasks"][:1]
        body["params"]["context"] = {"result": []}
    response = client.post("/predict", json=body)
    assert response.status_code == 200 and len(response.get_json()["results"]) == 1


def test_setup_with_a_config_that_does_not_fit_gets_a_specific_reason_phrase(client):
    body = captured(f"setup_{SHAPE}")
    body["schema"] = '<View><Image name="img" value="$img"/><PolygonLabels name="area" toName="img">' \
                     '<Label value="Car"/></PolygonLabels></View>'
    response = client.post("/setup", json=body)
    assert response.status_code == 422
    reason = response.status.split(" ", 1)[1]
    assert reason.startswith("Labeling config does not fit: needs ") and "PolygonLabels" in reason
    assert reason.isascii() and "\n" not in reason
    assert "example" in response.get_json()


@pytest.mark.slow


def test_start_training_before_its_annotation_webhook_still_trains_on_it(client):
    """Label Studio sends START_TRAINING before the ANNOTATION_CREATED of the annotation that caused it."""
    events = training_events()
    for event in events[:-1]:
        client.post("/webhook", json=event)
    assert client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}")).status_code == 201
    client.post("/webhook", json=events[-1])  # arrives after START_TRAINING, within the debounce
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "succeeded" and status["annotations"] == len(events)


@pytest.mark.slow


def test_webhook_returns_at_once_and_trains_in_the_background(client):
    for event in training_events():
        client.post("/webhook", json=event)
    response = client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    assert response.status_code == 201 and response.get_json()["status"] == "queued"
    assert client.get(f"/training/{PROJECT}").get_json()["state"] in ("queued", "running")
    assert wait_for_training(client, PROJECT)["state"] == "succeeded"


def test_unknown_actions_are_acknowledged_and_ignored(client):
    response = client.post("/webhook", json=captured("webhook_project_updated_text"))
    assert response.status_code == 200 and response.get_json()["status"] == "ignored"


def test_annotations_deleted_removes_them_from_the_training_set(client, backend):
    event = training_events(1)[0]
    client.post("/webhook", json=event)
    deleted = captured("webhook_annotations_deleted_text")
    deleted["project"]["id"] = int(PROJECT)
    deleted["annotations"] = [{"id": event["annotation"]["id"]}]
    response = client.post("/webhook", json=deleted)
    assert response.get_json() == {"status": "deleted", "annotations": [event["annotation"]["id"]]}
    assert backend.store(PROJECT).count_annotations() == 0


def test_updated_annotation_replaces_the_recorded_one(client, backend):
    first = training_events(1)[0]
    client.post("/webhook", json=first)
    updated = dict(first, action="ANNOTATION_UPDATED")
    updated["annotation"] = dict(first["annotation"], result=training_events(2)[1]["annotation"]["result"])
    client.post("/webhook", json=updated)
    (recorded,) = backend.store(PROJECT).annotations()
    assert recorded["result"] == updated["annotation"]["result"]


@pytest.mark.slow


def test_training_with_no_usable_annotations_is_skipped_and_keeps_the_model(client):
    cancelled = training_events(1)[0]
    cancelled["annotation"]["was_cancelled"] = True
    client.post("/webhook", json=cancelled)
    client.post("/webhook", json=captured(f"webhook_start_training_{SHAPE}"))
    status = wait_for_training(client, PROJECT)
    assert status["state"] == "skipped" and "no usable annotations" in status["error"]
    assert status["model_version"] == "untrained"


@pytest.mark.slow


def test_a_new_process_loads_the_trained_model(client, settings):
    version = train(client)["model_version"]
    fresh = create_app(Backend(MODEL_CLASS, settings)).test_client()
    assert fresh.post("/setup", json=captured(f"setup_{SHAPE}")).get_json()["model_version"] == version
    results = fresh.post("/predict", json=holdout_request()).get_json()["results"]
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]


@pytest.mark.parametrize(
    "body, content_type, status, reason",
    [
        ("not json", "application/json", 400, "Request body is not valid JSON"),
        ('{"tasks": []}', "text/plain", 415, "Content-Type must be application/json"),
        ("[1, 2]", "application/json", 400, "Request body must be a JSON object"),
        ("{}", "application/json", 400, "'tasks' must be a non-empty list of tasks"),
        ('{"tasks": "x"}', "application/json", 400, "'tasks' must be a non-empty list of tasks"),
        ('{"tasks": [{"id": 1}]}', "application/json", 400, "Task 0 has no 'data' object"),
    ],
)
def test_malformed_predict_requests_get_a_clear_4xx(client, body, content_type, status, reason):
    response = client.post("/predict", data=body, content_type=content_type)
    assert response.status_code == status
    assert response.status.split(" ", 1)[1] == reason
    assert response.get_json()["error"] == reason


@pytest.mark.parametrize("params, kind", [([], "an array"), ("context", "a string"), (1, "a number")])
def test_params_that_are_not_an_object_are_refused_with_the_fix(client, params, kind):
    """The OpenAPI document says params is an object (or null); anything else was silently dropped."""
    body = {**captured(f"predict_{SHAPE}"), "params": params}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    reason = response.status.split(" ", 1)[1]
    assert reason == (f"'params' must be a JSON object or null, not {kind}; "
                      'send e.g. {"context": null}, or leave it out')
    assert response.get_json()["error"] == reason
    assert client.post("/predict", json={**body, "params": None}).status_code == 200


def test_any_part_that_cannot_answer_now_gets_a_503_saying_when_to_retry(client, backend, monkeypatch):
    """Errors are answered by their base class: a new kind of "not now" needs no handler of its own."""

    class Warming(Unavailable):
        retry_after = 7

    def predict(*args, **kwargs):
        raise Warming("GPU is warming up; retry in a few seconds")

    monkeypatch.setattr(backend, "predict", predict)
    response = client.post("/predict", json=captured(f"predict_{SHAPE}"))
    assert response.status == "503 GPU is warming up; retry in a few seconds"
    assert response.headers["Retry-After"] == "7"
    assert response.get_json() == {"error": "GPU is warming up; retry in a few seconds"}


def test_a_task_missing_the_configured_field_is_named(client):
    body = captured(f"predict_{SHAPE}")
    body["tasks"][0]["data"] = {"other": "x"}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    key = "image" if SHAPE in ("image", "detection") else "text"
    assert response.get_json()["error"] == f"Task {body['tasks'][0]['id']} has no data field '{key}'"


def test_setup_without_schema_or_project_is_refused(client):
    assert client.post("/setup", json={"project": "1.1"}).status.endswith("'schema' (the labeling config) is missing")
    body = captured(f"setup_{SHAPE}")
    del body["project"]
    assert client.post("/setup", json=body).status == "400 'project' is missing"


def test_annotation_event_without_fields_stores_nothing(client, backend):
    event = training_events(1)[0]
    del event["task"]
    response = client.post("/webhook", json=event)
    assert response.status_code == 400
    assert backend.store(PROJECT).count_annotations() == 0


def test_duplicate_webhook_deliveries_are_idempotent(client, backend):
    event = training_events(1)[0]
    for _ in range(3):
        assert client.post("/webhook", json=event).status_code == 200
    assert backend.store(PROJECT).count_annotations() == 1


@pytest.mark.slow


def test_legacy_train_endpoint_queues_training(client):
    for event in training_events():
        client.post("/webhook", json=event)
    body = {"project": PROJECT, "label_config": captured(f"setup_{SHAPE}")["schema"]}
    assert client.post("/train", json=body).status_code == 201
    assert wait_for_training(client, PROJECT)["state"] == "succeeded"


def test_metrics_count_requests(client):
    client.get("/health")
    client.post("/predict", json=captured(f"predict_{SHAPE}"))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lsbackend_requests_total{endpoint="health",status="200"} 1' in text
    assert f"lsbackend_tasks_predicted_total {len(captured(f'predict_{SHAPE}')['tasks'])}" in text


class TestBasicAuth:
    @pytest.fixture
    def client(self, tmp_path):
        settings = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG,
                            basic_auth_user="ls", basic_auth_pass="s3cret")
        return create_app(Backend(MODEL_CLASS, settings)).test_client()

    @staticmethod
    def auth(user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def test_health_stays_open(self, client):
        assert client.get("/health").status_code == 200

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic !!!"}, "wrong"])
    def test_everything_else_needs_credentials(self, client, headers):
        if headers == "wrong":
            headers = self.auth("ls", "guess")
        response = client.post("/setup", json=captured(f"setup_{SHAPE}"), headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert "s3cret" not in response.get_data(as_text=True)

    def test_right_credentials_pass(self, client):
        response = client.post("/setup", json=captured(f"setup_{SHAPE}"), headers=self.auth("ls", "s3cret"))
        assert response.status_code == 200
