"""Extra params from Label Studio's Connect dialog reach the model, per project, and survive a restart."""

from __future__ import annotations

import math

import pytest

from lsbackend.server import create_app
from lsbackend.service import Backend

from conftest import MODEL_CLASS, SHAPE, captured, holdout_request, skip_unless_scored
from test_faults import annotations

SETUP = captured(f"setup_{SHAPE}")
PROJECT = SETUP["project"].split(".")[0]
OTHER = "99"  # a project of its own, whatever the variant's captured project is


def setup(client, project: str = PROJECT, **body) -> object:
    return client.post("/setup", json={**SETUP, "project": f"{project}.1795850610", **body})


def predicted_results(client, project: str = PROJECT) -> list[list[dict]]:
    response = client.post("/predict", json={**holdout_request(), "project": project})
    assert response.status_code == 200, response.status
    return [r["result"] for r in response.get_json()["results"]]


@pytest.fixture
def trained(backend: Backend) -> Backend:
    for project in (PROJECT, OTHER):
        assert backend.train(project, annotations())["state"] == "succeeded"
    return backend


def test_extra_params_reach_the_model_per_project(client, trained, config):
    assert setup(client, extra_params={"score_threshold": 0.25, "note": "mine"}).status_code == 200
    assert setup(client, OTHER, extra_params=None).status_code == 200
    assert trained.model(PROJECT, config).extra_params == {"score_threshold": 0.25, "note": "mine"}
    assert trained.model(OTHER, config).extra_params == {}


def scores(results: list[list[dict]]) -> list[float]:
    return sorted(item["score"] for result in results for item in result if "score" in item)


def test_a_score_threshold_leaves_out_unsure_predictions_until_it_is_cleared(client, trained):
    setup(client)
    results = predicted_results(client)
    assert any(results), "the trained model predicts held-out tasks"
    skip_unless_scored(results)
    given = scores(results)
    # the top score keeps only the surest items; when every item scored the same, just above it keeps none
    threshold = given[-1] if given[0] < given[-1] else math.nextafter(given[-1], 2.0)
    if threshold > 1:
        pytest.skip(f"{MODEL_CLASS.__name__} scored every held-out item 1.0: no threshold leaves one out")
    assert setup(client, extra_params={"score_threshold": threshold}).status_code == 200
    kept = scores(predicted_results(client))
    assert all(score >= threshold for score in kept), "only items scoring at least the threshold are kept"
    assert len(kept) < len(given), "the items scoring under the threshold are left out"
    assert len(scores(predicted_results(client, OTHER))) == len(given), "another project keeps its own (no) threshold"
    setup(client, extra_params=None)  # the user emptied the field: Label Studio sends null
    assert scores(predicted_results(client)) == given


def test_extra_params_survive_a_restart(client, trained, settings, config):
    setup(client, extra_params={"score_threshold": 0.5})
    restarted = Backend(MODEL_CLASS, settings)
    assert restarted.model(PROJECT, config).extra_params == {"score_threshold": 0.5}


def test_extra_params_given_as_json_text_are_parsed(client, backend, config):
    assert setup(client, extra_params='{"score_threshold": 0.4}').status_code == 200
    assert backend.model(PROJECT, config).extra_params == {"score_threshold": 0.4}


@pytest.mark.parametrize(
    ("extra_params", "reason"),
    [
        ({"score_threshold": "high"}, "score_threshold must be a number from 0 to 1"),
        ({"score_threshold": 7}, "score_threshold must be a number from 0 to 1"),
        ("threshold=0.5", "Extra params must be a JSON object"),
        ([0.5], "Extra params must be a JSON object"),
    ],
)
def test_unusable_extra_params_are_refused_at_setup_and_the_old_ones_kept(client, backend, config, extra_params,
                                                                          reason):
    setup(client, extra_params={"score_threshold": 0.3})
    response = setup(client, extra_params=extra_params)
    assert response.status_code == 422 and reason in response.status, response.status
    assert backend.model(PROJECT, config).extra_params == {"score_threshold": 0.3}


def test_setup_without_extra_params_keeps_them(settings, config):
    """Older callers (and /train) send no extra_params key at all: nothing is cleared."""
    backend = Backend(MODEL_CLASS, settings)
    client = create_app(backend).test_client()
    setup(client, extra_params={"score_threshold": 0.3})
    body = {k: v for k, v in SETUP.items() if k != "extra_params"}
    assert client.post("/setup", json=body).status_code == 200
    assert backend.model(PROJECT, config).extra_params == {"score_threshold": 0.3}
