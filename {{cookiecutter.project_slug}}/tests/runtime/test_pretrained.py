"""MODEL_URI: start from existing weights, fetched once, checked, loaded in the background.

The runtime's part, for any variant: the model class here loads its "pretrained" weights by
training on the variant's examples, behind a gate the test opens, to stand in for a large
model that takes long to load. The variants' own tests load real files (joblib, ONNX).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lsbackend.label_studio_api import normalize_annotation
from lsbackend.pretrained import PretrainedError, fetch
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.storage import PretrainedStore

import examples
from conftest import EXAMPLES_CONFIG, MODEL_CLASS, SHAPE, captured, holdout_request
from harness import serve_in_thread, stop_serving
from test_faults import annotations

SETUP = captured(f"setup_{SHAPE}")
PROJECT = SETUP["project"].split(".")[0]
GATE = threading.Event()


def examples_output() -> dict:
    pairs = examples.training_set()
    found = [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]
    return MODEL_CLASS(EXAMPLES_CONFIG.read_text(encoding="utf-8")).fit(found)


class SlowPretrained(MODEL_CLASS):
    """Loads "weights" only once the test opens ``GATE``, like a big model still reading from disk."""

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        assert path.read_bytes() == b"weights"
        GATE.wait(30)
        return examples_output()


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights")
    return path


@pytest.fixture
def gate():
    GATE.clear()
    yield GATE
    GATE.set()  # never leave a loader thread waiting


def predict(client, project: str = PROJECT):
    return client.post("/predict", json={**holdout_request(), "project": project})


def test_setup_and_health_answer_while_loading_and_predict_says_why(settings, weights, gate):
    backend = Backend(SlowPretrained, replace(settings, model_uri=str(weights)))
    client = create_app(backend).test_client()
    assert client.get("/health").get_json()["pretrained"] == "loading"
    assert client.post("/setup", json=SETUP).status_code == 200
    loading = predict(client)
    assert loading.status == "503 Model is loading from MODEL_URI; retry in a few seconds"
    assert loading.headers["Retry-After"]
    gate.set()
    assert backend.pretrained.wait(30)
    version = "pretrained-" + hashlib.sha256(b"weights").hexdigest()[:12]
    assert client.get("/health").get_json()["pretrained"] == "ready"
    assert client.post("/setup", json=SETUP).get_json() == {"model_version": version}
    results = predict(client).get_json()["results"]
    assert {r["model_version"] for r in results} == {version}
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
    assert client.get("/versions").get_json()["versions"] == [version]


def test_training_replaces_the_pretrained_model_and_keeps_listing_it(settings, weights, gate):
    gate.set()
    backend = Backend(SlowPretrained, replace(settings, model_uri=str(weights)))
    assert backend.pretrained.wait(30)
    trained = backend.train(PROJECT, annotations())["model_version"]
    client = create_app(backend).test_client()
    assert {r["model_version"] for r in predict(client).get_json()["results"]} == {trained}
    assert backend.versions(PROJECT)["versions"] == [trained, backend.pretrained.version]


def test_a_model_uri_that_cannot_be_read_answers_503_naming_it(settings, tmp_path):
    missing = tmp_path / "nope.joblib"
    backend = Backend(MODEL_CLASS, replace(settings, model_uri=str(missing)))
    assert backend.pretrained.wait(30)
    response = predict(create_app(backend).test_client())
    assert response.status_code == 503
    assert "Pretrained model failed to load: MODEL_URI" in response.status and "nope.joblib" in response.status
    assert create_app(backend).test_client().get("/health").get_json()["pretrained"] == "failed"


class Files(BaseHTTPRequestHandler):
    body = b"weights"
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_url():
    Files.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    yield f"{serve_in_thread(server)}/models/weights.bin?token=secret"
    stop_serving(server)


def test_an_http_model_is_downloaded_once_and_its_digest_recorded(tmp_path, http_url):
    store = PretrainedStore(tmp_path)
    first = fetch(http_url, store, max_bytes=1024)
    again = fetch(http_url, store, max_bytes=1024)  # another worker, or a restart
    assert Files.hits == 1 and first == again
    assert first["sha256"] == hashlib.sha256(b"weights").hexdigest() and first["size"] == 7
    assert store.path(first).read_bytes() == b"weights"


def test_a_model_over_the_size_limit_is_refused_and_nothing_is_kept(tmp_path, http_url):
    store = PretrainedStore(tmp_path)
    with pytest.raises(PretrainedError, match="larger than 0 MB; raise MODEL_MAX_MB") as caught:
        fetch(http_url, store, max_bytes=3)
    assert "secret" not in str(caught.value)  # a token in the query string stays out of messages
    assert [p.name for p in store.dir.iterdir()] == [".fetch.lock"]


def test_a_digest_mismatch_is_refused(tmp_path, weights):
    with pytest.raises(PretrainedError, match="but MODEL_SHA256 is 00"):
        fetch(str(weights), PretrainedStore(tmp_path), max_bytes=1024, expected_sha256="00" * 32)


def test_an_unsupported_scheme_names_what_works(tmp_path):
    with pytest.raises(PretrainedError, match=r"gs:// is not supported; use a local path, an http\(s\) URL or s3://"):
        fetch("gs://bucket/model.onnx", PretrainedStore(tmp_path), max_bytes=1024)
