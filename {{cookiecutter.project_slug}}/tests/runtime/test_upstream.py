"""Models written for upstream's ``label_studio_ml`` SDK run unchanged (the ``label_studio_ml`` package).

The models are upstream's own files, vendored byte for byte under ``tests/runtime/upstream/`` (Apache-2.0,
see its README): the 2.x ``sklearn_text_classifier`` and ``interactive_substring_matching`` examples
and the 1.x-era ``simple_text_classifier``. They are served by the production server, trained through
Label Studio's webhooks in the runtime's training process, and must predict what they learned.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from label_studio_ml import own_files
from label_studio_ml.label_interface import LabelInterface, PredictionValue, parse_config
from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.response import ModelResponse
from label_studio_ml.utils import get_env, get_single_tag_keys
from lsbackend.label_config import ConfigError, parse_label_config
from lsbackend.service import Backend, PredictionError, load_model_class
from lsbackend.settings import Settings

from conftest import ROOT, captured
from harness import ServerProcess, wait_for_training

UPSTREAM = Path(__file__).resolve().parent / "upstream"
SKLEARN = "tests.runtime.upstream.sklearn_text_classifier.model:SklearnTextClassifier"
SUBSTRING = "tests.runtime.upstream.interactive_substring_matching.model:InteractiveSubstringMatching"
SIMPLE_1X = "tests.runtime.upstream.simple_text_classifier.simple_text_classifier:SimpleTextClassifier"
TEXT_SETUP, NER_SETUP = captured("setup_text"), captured("setup_ner")
TEXT_CONFIG, NER_CONFIG = TEXT_SETUP["schema"], NER_SETUP["schema"]
PROJECT = TEXT_SETUP["project"].split(".")[0]
#: Sentiment examples with words of their own per class, so that a trained model must get the held-out ones right.
TRAINING = [
    ("I love it, wonderful and great", "Positive"), ("awful, I hate it", "Negative"),
    ("it is okay, average", "Neutral"), ("great product, I love the quality", "Positive"),
    ("terrible and awful quality, hate", "Negative"), ("average product, okay I guess", "Neutral"),
    ("wonderful service, love it", "Positive"), ("I hate this terrible thing", "Negative"),
    ("okay, nothing special, average", "Neutral"),
]  # every label within the first six: upstream's sklearn example mislabels a class it never saw
HOLDOUT = [("I love it", "Positive"), ("I hate it", "Negative"), ("average, okay", "Neutral")]
#: The files as upstream published them (tests/runtime/upstream/README.md): a changed fixture proves nothing.
FIXTURE_SHA256 = {
    "sklearn_text_classifier/model.py": "c9ce3a9078d6f08eed2c01b689cd9e77fc80320688b61e545b2ed362b8b27b55",
    "interactive_substring_matching/model.py": "82f04d0aa8f6132963c3aa98a002a4732be892199427ad4f47e7e5a8d70ad70b",
    "simple_text_classifier/simple_text_classifier.py":
        "31570ea9a0d88ec45b5761249dc2151f044fdb8015c3dc0969bb27e1565c9da1",
}


def annotation_event(i: int, text: str, label: str) -> dict:
    """The captured text ANNOTATION_CREATED webhook with another annotation, task and choice."""
    body = copy.deepcopy(captured("webhook_annotation_created_text"))
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
    body["annotation"].update(id=3000 + i, task=4000 + i, result=result, updated_at=f"2026-11-28T09:00:{i:02d}Z")
    body["task"] = {**body.get("task", {}), "id": 4000 + i, "data": {"text": text}}
    return body


def recorded(items: list[tuple[str, str]]) -> list[dict]:
    """The same examples as the annotations the runtime hands to training."""
    return [{"id": 3000 + i, "result": annotation_event(i, text, label)["annotation"]["result"],
             "was_cancelled": False, "updated_at": f"2026-11-28T09:00:{i:02d}Z",
             "task": {"id": 4000 + i, "data": {"text": text}}} for i, (text, label) in enumerate(items)]


def tasks(items: list[tuple[str, str]]) -> list[dict]:
    return [{"id": 600 + i, "data": {"text": text}} for i, (text, _) in enumerate(items)]


def chosen(predictions: list[dict]) -> list[str]:
    return [p["result"][0]["value"]["choices"][0] for p in predictions]


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MODEL_DIR for the runtime and for upstream code reading the environment, as in production."""
    path = tmp_path / "models"
    monkeypatch.setenv("MODEL_DIR", str(path))
    return path


def backend_for(spec: str, model_dir: Path, **settings: object) -> Backend:
    """A backend on ``model_dir`` serving ``spec``, its module imported afresh, as a new process would:
    upstream classes read MODEL_DIR from the environment once, at import."""
    sys.modules.pop(spec.partition(":")[0], None)
    return Backend(load_model_class(spec), Settings(model_dir=model_dir, **settings))


# --- the fixtures are upstream's --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIXTURE_SHA256))
def test_the_upstream_fixtures_are_byte_for_byte_upstreams(name):
    assert hashlib.sha256((UPSTREAM / name).read_bytes()).hexdigest() == FIXTURE_SHA256[name]


# --- label_interface ----------------------------------------------------------------------------
PREDICTED = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
             '<Label value="Car" predicted_values="car, truck"/><Label value="Person"/></RectangleLabels>'
             '<TextArea name="note" toName="img"/></View>')


def test_label_interface_finds_tags_as_upstream_models_ask():
    interface = LabelInterface(TEXT_CONFIG)
    assert interface.get_first_tag_occurence("Choices", "Text") == ("sentiment", "text", "text")
    assert interface.get_first_tag_occurence(("Labels", "Choices"), ("Image", "Text")) == ("sentiment", "text", "text")
    control = interface.get_tag("sentiment")
    assert control.labels == ["Positive", "Negative", "Neutral"] and control.attr["choice"] == "single"
    assert control.tag == "Choices" and control.to_name == ["text"] and control.objects[0].value_name == "text"
    assert interface.get_control() is control and interface.get_object("text").tag == "Text"
    assert [c.name for c in interface.controls] == ["sentiment"] and [o.name for o in interface.objects] == ["text"]


def test_label_interface_errors_name_what_the_config_has():
    interface = LabelInterface(TEXT_CONFIG)
    with pytest.raises(ValueError, match="no Labels control over a Text tag"):
        interface.get_first_tag_occurence("Labels", "Text")
    with pytest.raises(KeyError, match="no tag named 'label'; it has sentiment, text"):
        interface.get_tag("label")
    with pytest.raises(ConfigError, match="DOCTYPE"):
        LabelInterface('<!DOCTYPE x [<!ENTITY a "b">]><View/>')


def test_label_attributes_map_model_names_and_controls_build_results():
    interface = LabelInterface(PREDICTED)
    box = interface.get_control("box")
    assert box.labels_attrs["Car"].attr["predicted_values"] == "car, truck"
    model = LabelStudioMLBase(PREDICTED, "1")
    assert model.build_label_map("box", ["car", "truck", "person", "dog"]) == \
        {"car": "Car", "truck": "Car", "person": "Person"}
    assert box.label("Car", x=1, y=2) == {"from_name": "box", "to_name": "img", "type": "rectanglelabels",
                                          "value": {"x": 1, "y": 2, "rectanglelabels": ["Car"]}}
    assert interface.get_control("note").label(text=["a"])["value"] == {"text": ["a"]}


def test_parsed_label_config_has_upstreams_shape():
    parsed = parse_config(TEXT_CONFIG)["sentiment"]
    assert parsed["inputs"] == [{"type": "Text", "valueType": None, "value": "text"}]
    assert list(parsed["labels_attrs"]) == ["Positive", "Negative", "Neutral"]
    assert LabelStudioMLBase(TEXT_CONFIG, "1").parsed_label_config == parse_config(TEXT_CONFIG)
    assert get_single_tag_keys(parse_config(TEXT_CONFIG), "Choices", "Text") == \
        ("sentiment", "text", "text", ["Positive", "Negative", "Neutral"])
    with pytest.raises(ValueError, match="has <Choices>, this model needs <Labels>"):
        get_single_tag_keys(parse_config(TEXT_CONFIG), "Labels", "Text")


# --- the base class ---------------------------------------------------------------------------
class KeyValueModel(LabelStudioMLBase):
    def setup(self):
        self.set("model_version", "KeyValueModel-v0.0.1")
        self.set("prompt", f"prompt of {self.project_id}")


def test_get_set_has_are_per_project_and_model_version_is_the_served_one():
    one = KeyValueModel(TEXT_CONFIG, "1", model_version="v3-20261206T000000")
    other = KeyValueModel(label_config=TEXT_CONFIG, project_id="2")
    assert one.get("model_version") == "v3-20261206T000000" and one.upstream_version == "KeyValueModel-v0.0.1"
    assert one.get("prompt") == "prompt of 1" and other.get("prompt") == "prompt of 2"
    assert one.has("prompt") and not one.has("nothing") and one.get("nothing") is None
    assert one.get("label_config") == TEXT_CONFIG


def test_labels_and_score_threshold_are_writable():
    model = LabelStudioMLBase(TEXT_CONFIG, "1", extra_params={"score_threshold": 0.3})
    assert model.labels == ["Positive", "Negative", "Neutral"] and model.score_threshold == 0.3
    model.labels, model.score_threshold = ["a", "b"], 0.7
    assert model.labels == ["a", "b"] and model.score_threshold == 0.7


def test_a_config_without_a_control_over_an_object_is_refused_with_an_example():
    with pytest.raises(ConfigError, match="no control tag over an object tag") as caught:
        LabelStudioMLBase.check_config(parse_label_config('<View><Text name="t" value="$t"/></View>'))
    assert "<Choices" in caught.value.example


class ManyShapes(LabelStudioMLBase):
    """Answers in every shape upstream models use, chosen by the task."""

    def predict(self, tasks, context=None, **kwargs):
        item = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
        shapes = {
            "dict": {"result": [item], "score": np.float64(0.5)},
            "value": PredictionValue(result=[item], score=np.float32(0.25), model_version="mine"),
            "several": [PredictionValue(result=[item], score=0.75), PredictionValue(result=[], score=0.1)],
        }
        return ModelResponse(predictions=[shapes[t["data"]["text"]] for t in tasks], model_version="Mine-v1")


def test_every_upstream_prediction_shape_becomes_one_plain_dict_per_task_with_the_served_version(model_dir):
    backend = Backend(ManyShapes, Settings(model_dir=model_dir))
    answer = backend.predict(PROJECT, TEXT_CONFIG, [{"id": i, "data": {"text": t}}
                                                    for i, t in enumerate(["dict", "value", "several"])])
    assert [(p["score"], type(p["score"]), p["model_version"]) for p in answer] == \
        [(0.5, float, "untrained"), (0.25, float, "untrained"), (0.75, float, "untrained")]
    assert all(p["result"][0]["value"] == {"choices": ["Positive"]} for p in answer)


def test_a_prediction_missing_for_a_task_is_reported_not_shifted(model_dir):
    """interactive_substring_matching skips a task without text: the answers must not slide onto other tasks."""
    backend = backend_for(SUBSTRING, model_dir)
    region = {"from_name": "label", "to_name": "text", "type": "labels",
              "value": {"start": 0, "end": 3, "text": "Bob", "labels": ["PER"]}}
    two = [{"id": 1, "data": {"text": ""}}, {"id": 2, "data": {"text": "Bob and Bob"}}]
    with pytest.raises(PredictionError, match="returned 1 predictions for 2 tasks"):
        backend.predict("6", NER_CONFIG, two, context={"result": [region]})


def test_media_is_loaded_through_the_runtimes_resolver(model_dir, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "review.txt").write_text("loaded from a file", encoding="utf-8")
    model = LabelStudioMLBase(TEXT_CONFIG, "1", settings=Settings(model_dir=model_dir,
                                                                  local_files_root=str(tmp_path / "files")))
    inline = "data:text/plain;base64," + base64.b64encode(b"inline text").decode()
    task = {"id": 7, "data": {"text": inline, "plain": "kept as it is", "more": [f"file://{tmp_path}/files/review.txt"]}}
    assert model.preload_task_data(task) == {"text": "inline text", "plain": "kept as it is",
                                             "more": ["loaded from a file"]}
    assert Path(model.get_local_path(f"file://{tmp_path}/files/review.txt")).read_bytes() == b"loaded from a file"
    with pytest.raises(Exception, match="LOCAL_FILES_ROOT|outside"):
        model.get_local_path("file:///etc/passwd")


def test_an_sdk_name_this_backend_lacks_says_how_to_get_the_real_sdk():
    proc = subprocess.run([sys.executable, "-c", "from label_studio_sdk.converter import brush"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "label_studio_sdk.converter is not in this backend's built-in subset" in proc.stderr
    assert "pip install label-studio-sdk" in proc.stderr and "numpy" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "from label_studio_sdk import LabelStudio"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "label_studio_sdk.LabelStudio is not in this backend's built-in subset" in proc.stderr


def test_an_installed_real_sdk_replaces_the_stand_in(tmp_path):
    """With label-studio-sdk installed, `import label_studio_sdk` gives it, though this repo's folder comes first."""
    real = tmp_path / "site" / "label_studio_sdk"
    (real / "converter").mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n", encoding="utf-8")
    (real / "converter" / "__init__.py").write_text("brush = 'real brush'\n", encoding="utf-8")
    code = "import label_studio_sdk; from label_studio_sdk.converter import brush; print(label_studio_sdk.REAL, brush)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, ''); {code}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True real brush"


@pytest.mark.slow


def test_the_default_backend_never_imports_the_compatibility_package(tmp_path):
    code = ("import sys; from lsbackend.app import build_app; build_app(); "
            "print(sorted(m for m in sys.modules if m.startswith(('label_studio_ml', 'label_studio_sdk'))))")
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "models")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- upstream's own files, in process ------------------------------------------------------------
@pytest.mark.parametrize("spec", [SKLEARN, SIMPLE_1X])
def test_upstream_text_classifiers_learn_from_the_runtimes_annotations(spec, model_dir):
    backend = backend_for(spec, model_dir)
    assert backend.setup(PROJECT, TEXT_CONFIG) == "untrained"
    status = backend.train(PROJECT, recorded(TRAINING))
    assert status["state"] == "succeeded", status
    predictions = backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT))
    assert chosen(predictions) == [label for _, label in HOLDOUT]
    assert {p["model_version"] for p in predictions} == {status["model_version"]}


FLIPPED = [(text, {"Positive": "Negative", "Negative": "Positive"}.get(label, label)) for text, label in TRAINING]


@pytest.mark.parametrize("spec", [SKLEARN, SIMPLE_1X])
def test_the_files_an_upstream_model_saves_itself_are_versioned_and_rolled_back(spec, model_dir):
    """sklearn_text_classifier overwrites MODEL_DIR/model.pkl, simple_text_classifier adds <uuid>.pkl:
    rolling back must bring the first training's file back, not only its version label."""
    backend = backend_for(spec, model_dir)
    backend.setup(PROJECT, TEXT_CONFIG)  # the project's config, whatever this repo's label_config.xml is
    first = backend.train(PROJECT, recorded(TRAINING))["model_version"]
    assert chosen(backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT[:2]))) == ["Positive", "Negative"]
    second = backend.train(PROJECT, recorded(FLIPPED))["model_version"]
    assert chosen(backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT[:2]))) == ["Negative", "Positive"]
    backend.use_version(PROJECT, first)
    rolled_back = backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT[:2]))
    assert chosen(rolled_back) == ["Positive", "Negative"] and rolled_back[0]["model_version"] == first
    for path in model_dir.glob("*.pkl"):
        path.unlink()  # a replica that never trained (the S3 store's case): the version brings its files
    restarted = backend_for(spec, model_dir)
    backend.use_version(PROJECT, second)
    assert chosen(restarted.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT[:2]))) == ["Negative", "Positive"]
    own = {p.name for p in model_dir.iterdir()} - set(own_files.STORE_ENTRIES)
    assert own and all(name.endswith(".pkl") for name in own), "the store's own entries are all listed"


def test_upstream_interactive_substring_matching_labels_every_occurrence(model_dir):
    backend = backend_for(SUBSTRING, model_dir)
    project = NER_SETUP["project"].split(".")[0]
    task = {"id": 9, "data": {"text": "alice met Alice and ALICE"}}
    assert backend.predict(project, NER_CONFIG, [task], context=None) == \
        [{"result": [], "score": 0.0, "model_version": "untrained"}]
    region = {"from_name": "label", "to_name": "text", "type": "labels",
              "value": {"start": 10, "end": 15, "text": "Alice", "labels": ["PER"]}}
    [answer] = backend.predict(project, NER_CONFIG, [task], context={"result": [region]})
    assert [(r["value"]["start"], r["value"]["text"], r["value"]["labels"]) for r in answer["result"]] == \
        [(0, "alice", ["PER"]), (10, "Alice", ["PER"]), (20, "ALICE", ["PER"])]
    assert answer["model_version"] == "untrained"


def test_a_model_without_fit_fails_its_training_saying_so_and_keeps_serving(model_dir):
    backend = backend_for(SUBSTRING, model_dir)
    status = backend.train(PROJECT, recorded(TRAINING))
    assert status["state"] == "failed" and "has no fit method" in status["error"], status
    assert backend.served_version(PROJECT) == "untrained"


def test_label_studio_host_is_read_as_label_studio_url(monkeypatch):
    """Upstream backends are configured with LABEL_STUDIO_HOST; LABEL_STUDIO_URL wins when both are set."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_HOST", "http://label-studio:8080/")
    assert Settings.from_env().label_studio_url == "http://label-studio:8080"
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://other:8080")
    assert Settings.from_env().label_studio_url == "http://other:8080"


def test_get_env_reads_the_upstream_prefixed_name_first(monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_ML_BACKEND_HOSTNAME", "http://ls:8080")
    monkeypatch.setenv("HOSTNAME", "ignored")
    assert get_env("HOSTNAME") == "http://ls:8080" and get_env("NOT_SET_ANYWHERE", "d") == "d"


def test_the_porting_guides_native_version_learns_like_upstreams(model_dir, tmp_path, monkeypatch):
    """docs/upstream.md's "After" block, run as the model.py it says to write."""
    guide = (ROOT / "docs" / "upstream.md").read_text(encoding="utf-8")
    after = guide[guide.index("### After"):]
    code = after[after.index("```python\n") + 10:after.index("```\n", after.index("```python"))]
    (tmp_path / "ported_model.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = backend_for("ported_model:SklearnTextClassifier", model_dir)
    assert backend.setup(PROJECT, TEXT_CONFIG) == "untrained"
    assert backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT))[0]["result"] == []
    status = backend.train(PROJECT, recorded(TRAINING))
    assert status["state"] == "succeeded", status
    assert chosen(backend.predict(PROJECT, TEXT_CONFIG, tasks(HOLDOUT))) == [label for _, label in HOLDOUT]


# --- upstream's own files, served by the production server ----------------------------------------
class Server(ServerProcess):
    """``python -m lsbackend start`` serving an upstream model (``MODEL_CLASS``) on ``model_dir``."""

    def __init__(self, spec: str, model_dir: Path, log: Path) -> None:
        env = {**os.environ, "MODEL_DIR": str(model_dir), "TRAIN_DEBOUNCE_SECONDS": "0.3", "MODEL_CLASS": spec}
        super().__init__([sys.executable, "-m", "lsbackend", "start"], log, env)

    def predict_text(self, items: list[tuple[str, str]], context: dict | None = None) -> list[dict]:
        body = {**captured("predict_text"), "tasks": tasks(items), "params": {"context": context}}
        status, answer = self.request("POST", "/predict", body)
        assert status == 200, (answer, self.log.read_text())
        return answer["results"]

    def train_through_webhooks(self, items: list[tuple[str, str]], first: int = 0) -> dict:
        for i, (text, label) in enumerate(items, start=first):
            assert self.request("POST", "/webhook", annotation_event(i, text, label))[0] == 200
        status, body = self.request("POST", "/webhook", captured("webhook_start_training_text"))
        assert status == 201 and body["status"] == "queued", body
        return wait_for_training(lambda: self.request("GET", f"/training/{PROJECT}")[1], timeout=300,
                                 context=self.log.read_text)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [SKLEARN, SIMPLE_1X])
def test_upstream_text_classifiers_served_trained_through_webhooks_and_restarted(spec, tmp_path):
    model_dir = tmp_path / "models"
    server = Server(spec, model_dir, tmp_path / "server.log")
    try:
        assert server.request("POST", "/setup", TEXT_SETUP)[1] == {"model_version": "untrained"}
        before = server.predict_text(HOLDOUT)  # an untrained model, now held in the serving process
        assert {p["model_version"] for p in before} == {"untrained"}
        trained = server.train_through_webhooks(TRAINING[:6])
        assert trained["state"] == "succeeded" and trained["annotations"] == 6, trained
        # a stale module global would still answer with the untrained model here
        after = server.predict_text(HOLDOUT[:2])
        assert chosen(after) == ["Positive", "Negative"], server.log.read_text()
        assert {p["model_version"] for p in after} == {trained["model_version"]}
        again = server.train_through_webhooks(TRAINING[6:], first=6)  # a second training after the re-import
        assert again["state"] == "succeeded" and again["annotations"] == 9, again
        assert again["model_version"] != trained["model_version"]
        assert chosen(server.predict_text(HOLDOUT)) == [label for _, label in HOLDOUT]
    finally:
        server.stop()
    restarted = Server(spec, model_dir, tmp_path / "server2.log")
    try:
        assert restarted.request("POST", "/setup", TEXT_SETUP)[1] == {"model_version": again["model_version"]}
        assert chosen(restarted.predict_text(HOLDOUT)) == [label for _, label in HOLDOUT]
    finally:
        restarted.stop()


@pytest.mark.slow
def test_upstream_interactive_substring_matching_served_by_the_production_server(tmp_path):
    server = Server(SUBSTRING, tmp_path / "models", tmp_path / "server.log")
    try:
        assert server.request("POST", "/setup", NER_SETUP)[0] == 200
        body = copy.deepcopy(captured("predict_ner"))
        body["tasks"] = body["tasks"][:1]
        text = body["tasks"][0]["data"]["text"]
        word = text.split()[0]
        region = {"from_name": "label", "to_name": "text", "type": "labels",
                  "value": {"start": 0, "end": len(word), "text": word, "labels": ["PER"]}}
        body["params"] = {"context": {"result": [region]}}
        status, answer = server.request("POST", "/predict", body)
        assert status == 200, answer
        [prediction] = answer["results"]
        assert prediction["result"] and all(r["value"]["text"] == word for r in prediction["result"])
        assert prediction["model_version"] == "untrained"
    finally:
        server.stop()
