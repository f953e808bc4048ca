"""Shared fixtures: a backend on a temporary MODEL_DIR, its Flask client, captured requests.

The template's file, like everything in tests/runtime/ (the runtime's tests and their helpers and data):
`cruft update` keeps them current. Its fixtures serve those tests and tests/test_model.py, the tests of
your model, which are yours (docs/testing.md).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest

from lsbackend.server import create_app
from lsbackend.service import Backend, load_model_class
from lsbackend.settings import Settings

import examples
import harness

ROOT = harness.ROOT
RUNTIME_TESTS = Path(__file__).resolve().parent / "runtime"
PROTOCOL = RUNTIME_TESTS / "protocol"
MODEL_CLASS = load_model_class("model")
# Which captures (tests/runtime/protocol/*_<SHAPE>.json) fit this model: from the manifest of its variant.
SHAPE = json.loads((RUNTIME_TESTS / "variant.json").read_text(encoding="utf-8"))["captures"]


def captured(name: str) -> dict:
    """The JSON body of a request captured from Label Studio 1.23 (tests/runtime/protocol/)."""
    return json.loads((PROTOCOL / f"{name}.json").read_text(encoding="utf-8"))["json"]


def _examples_config() -> Path:
    """The captured config the examples are labeled with, as a file.

    Tests use it rather than the repo's label_config.xml, which is whatever the user chose.
    """
    path = Path(tempfile.mkdtemp(prefix="lsbackend-tests-")) / "label_config.xml"
    path.write_text(captured(f"setup_{SHAPE}")["schema"], encoding="utf-8")
    return path


EXAMPLES_CONFIG = _examples_config()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG, train_debounce_seconds=0.2
    )


@pytest.fixture
def backend(settings: Settings) -> Backend:
    return Backend(MODEL_CLASS, settings)


@pytest.fixture
def client(backend: Backend):
    return create_app(backend).test_client()


@pytest.fixture
def config() -> str:
    return captured(f"setup_{SHAPE}")["schema"]


def skip_unless_scored(results: list[list[dict]]) -> None:
    """Skip a test of what scores do when this model's result items carry none: scores are optional."""
    if not any("score" in item for result in results for item in result):
        pytest.skip(f"{MODEL_CLASS.__name__} gives no scores (they are optional): nothing here for a score to do")


def annotation_event(i: int, data: dict, result: list[dict], action: str = "ANNOTATION_CREATED") -> dict:
    """A captured ANNOTATION_CREATED webhook with another annotation id, task and result."""
    body = copy.deepcopy(captured(f"webhook_annotation_created_{SHAPE}"))
    body["action"] = action
    stamp = f"2026-11-28T08:{i // 60:02d}:{i % 60:02d}Z"
    body["annotation"].update(id=1000 + i, task=2000 + i, result=result, updated_at=stamp)
    body["task"] = {**body.get("task", {}), "id": 2000 + i, "data": data}
    return body


def training_events(n: int | None = None) -> list[dict]:
    """Annotation webhooks for the variant's labeled examples."""
    items = examples.training_set()[:n]
    return [annotation_event(i, data, result) for i, (data, result) in enumerate(items)]


def holdout_request() -> dict:
    """A captured /predict request carrying the variant's held-out examples."""
    body = captured(f"predict_{SHAPE}")
    template = body["tasks"][0]
    body["tasks"] = [{**template, "id": 500 + i, "data": data} for i, (data, _) in enumerate(examples.holdout())]
    return body


def wait_for_training(client, project: str, timeout: float = 300.0) -> dict:
    """The project's training status, polled through the Flask client until the job finished (bounded;
    generously, since each training runs in a child process that first imports the model's libraries)."""
    return harness.wait_for_training(lambda: client.get(f"/training/{project}").get_json(), timeout=timeout)
