"""Training also counts annotations fetched from Label Studio (both kinds of API key)."""

from __future__ import annotations

import dataclasses

import pytest
from fake_label_studio import LEGACY_TOKEN, PAT, FakeLabelStudio

from lsbackend.label_studio_api import LabelStudioClient, LabelStudioError
from lsbackend.service import Backend

import examples
from conftest import MODEL_CLASS, SHAPE, captured, training_events

PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]


def export() -> list[dict]:
    """The variant's labeled examples as a Label Studio JSON export."""
    return [
        {"id": 3000 + i, "data": data, "annotations": [{"id": 4000 + i, "result": result, "updated_at": "x"}]}
        for i, (data, result) in enumerate(examples.training_set())
    ]


@pytest.fixture
def label_studio():
    fake = FakeLabelStudio(export())
    yield fake
    fake.close()


@pytest.mark.parametrize("key, header", [(LEGACY_TOKEN, "Token "), (PAT, "Bearer ")])
def test_training_uses_annotations_fetched_with_either_kind_of_key(settings, label_studio, key, header):
    settings = dataclasses.replace(settings, label_studio_url=label_studio.url, label_studio_api_key=key)
    backend = Backend(MODEL_CLASS, settings)
    backend.setup(PROJECT, captured(f"setup_{SHAPE}")["schema"])  # the config the examples are labeled with
    status = backend.train(PROJECT)
    assert status["state"] == "succeeded", status
    assert status["annotations"] == len(examples.training_set())
    assert label_studio.auth_seen and all(a.startswith(header) for a in label_studio.auth_seen)


def test_recorded_and_fetched_annotations_are_merged_by_id(settings, label_studio, client):
    settings = dataclasses.replace(settings, label_studio_url=label_studio.url, label_studio_api_key=LEGACY_TOKEN)
    backend = Backend(MODEL_CLASS, settings)
    backend.setup(PROJECT, captured(f"setup_{SHAPE}")["schema"])  # the config the examples are labeled with
    for event in training_events(3):  # ids 1000.. differ from the export's 4000..
        backend.store(PROJECT).save_annotation({**event["annotation"], "task": event["task"]})
    assert len(backend.collect_annotations(PROJECT)) == len(examples.training_set()) + 3


def test_a_wrong_key_says_which_setting_to_check(label_studio):
    client = LabelStudioClient(label_studio.url, "wrong")
    with pytest.raises(LabelStudioError, match="check LABEL_STUDIO_API_KEY: legacy token or personal access token"):
        client.labeled_tasks("1")


def test_an_unreachable_label_studio_names_the_url_setting():
    client = LabelStudioClient("http://127.0.0.1:9", LEGACY_TOKEN)
    with pytest.raises(LabelStudioError, match="check LABEL_STUDIO_URL"):
        client.labeled_tasks("1")


def test_training_falls_back_to_recorded_annotations_when_label_studio_is_down(settings):
    settings = dataclasses.replace(settings, label_studio_url="http://127.0.0.1:9", label_studio_api_key=LEGACY_TOKEN)
    backend = Backend(MODEL_CLASS, settings)
    backend.setup(PROJECT, captured(f"setup_{SHAPE}")["schema"])  # the config the examples are labeled with
    for event in training_events():
        backend.store(PROJECT).save_annotation({**event["annotation"], "task": event["task"]})
    assert backend.train(PROJECT)["state"] == "succeeded"
