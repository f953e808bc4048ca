"""A real Label Studio 1.23.2 gets correct predictions from existing weights before any annotation.

The user's path for "I already have a model": bake the default repo, set
``MODEL_URI`` to a file (a scikit-learn pipeline saved with joblib for text, an
ONNX network for images), connect the backend, press "Retrieve Predictions".
Label Studio must see the ``pretrained-<digest>`` version in the Connect answer,
in its model-version list and on every stored prediction, and the predictions
must be right. Nothing is downloaded from a model hub: the models are made here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from harness import FileServer, wait_until
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from .baked_backend import BakedBackend, start_backend
from .label_studio import LabelStudio, LabelStudioClient
from .test_label_studio import ANNOTATED_PER_CLASS, NEGATIVE, POSITIVE, load_baked_examples, predictions_by_task

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def sentiment_pipeline(path: Path) -> None:
    """What a user trained last month: the annotated-looking texts, a TF-IDF + logistic regression pipeline."""
    texts = POSITIVE[:ANNOTATED_PER_CLASS] + NEGATIVE[:ANNOTATED_PER_CLASS]
    labels = ["Positive"] * ANNOTATED_PER_CLASS + ["Negative"] * ANNOTATED_PER_CLASS
    joblib.dump(make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0)).fit(texts, labels), path)


def colour_network(path: Path, examples, labels: tuple[str, str], side: int = 16) -> None:
    """A tiny ONNX "network" (pixels [N, 3, side, side] in 0..1 -> probabilities) made with skl2onnx."""
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    shades = [(c, labels[0]) for c in examples.RED] + [(c, labels[1]) for c in examples.BLUE]
    pixels = np.stack([np.asarray(examples.colour_image(c, 700 + i).resize((side, side)), dtype=np.float32) / 255.0
                       for i, (c, _) in enumerate(shades)]).transpose(0, 3, 1, 2)
    flat = 3 * side * side
    classifier = LogisticRegression(max_iter=1000).fit(pixels.reshape(len(shades), -1), [lab for _, lab in shades])
    model = to_onnx(classifier, initial_types=[("flat", FloatTensorType([None, flat]))],
                    options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, flat], dtype=np.int64), "flat_shape"))
    model.graph.node.insert(0, helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]))
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 3, side, side]))
    helper.set_model_props(model, {"labels": json.dumps([str(c) for c in classifier.classes_])})
    path.write_bytes(model.SerializeToString())


def pretrained_backend(baked: Path, label_studio: LabelStudio, tmp_path: Path, model: Path) -> BakedBackend:
    backend = start_backend(baked, tmp_path, label_studio.url, label_studio.token,
                            extra_env={"MODEL_URI": str(model)})
    wait_until(lambda: requests.get(f"{backend.url}/health", timeout=5).json().get("pretrained") == "ready",
               timeout=120, what="MODEL_URI to load", logs=[backend.process])
    return backend


def check_first_predictions(client: LabelStudioClient, backend: BakedBackend, project_id: int, model: Path,
                            truth: dict[int, str]) -> None:
    """Connect, retrieve once, and compare: the version is the file's digest, every prediction right."""
    version = "pretrained-" + hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    ml_backend = client.connect_ml_backend(project_id, backend.url, "pretrained backend")
    assert ml_backend["state"] == "CO" and ml_backend["model_version"] == version, ml_backend
    assert client.ml_backend_versions(ml_backend["id"]) == {"versions": [version]}
    client.retrieve_predictions(project_id, list(truth))
    stored = predictions_by_task(client, project_id)
    got = {}
    for task_id in truth:
        (prediction,) = stored[task_id]
        assert prediction["model_version"] == version, prediction
        choices = [v for item in prediction["result"] for v in item["value"].get("choices", [])]
        got[task_id] = choices[0] if choices else None
    assert got == truth


@pytest.mark.parametrize("model_type", ["text_classification"], indirect=True)
def test_a_joblib_pipeline_predicts_through_label_studio_before_any_annotation(
    ls_client: LabelStudioClient, label_studio: LabelStudio, baked_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "sentiment.joblib"
    sentiment_pipeline(model)
    backend = pretrained_backend(baked_dir, label_studio, tmp_path, model)
    try:
        project = ls_client.create_project("LS pretrained text", (baked_dir / "label_config.xml").read_text())
        held = [(t, "Positive") for t in POSITIVE[ANNOTATED_PER_CLASS:]] + \
               [(t, "Negative") for t in NEGATIVE[ANNOTATED_PER_CLASS:]]
        tasks = ls_client.import_tasks(project["id"], [{"text": text} for text, _ in held])
        check_first_predictions(ls_client, backend, project["id"], model,
                                {task["id"]: label for task, (_, label) in zip(tasks, held, strict=True)})
    finally:
        backend.stop()


@pytest.mark.parametrize("model_type", ["image_classification"], indirect=True)
def test_an_onnx_network_predicts_through_label_studio_before_any_annotation(
    ls_client: LabelStudioClient, label_studio: LabelStudio, baked_dir: Path, tmp_path: Path, file_server: FileServer
) -> None:
    examples = load_baked_examples(baked_dir)
    config = (baked_dir / "label_config.xml").read_text()
    labels = ("Cat", "Dog")  # the default config's first two choices stand in for the colours
    assert all(f'value="{label}"' in config for label in labels), config
    model = tmp_path / "colours.onnx"
    colour_network(model, examples, labels)
    backend = pretrained_backend(baked_dir, label_studio, tmp_path, model)
    try:
        project = ls_client.create_project("LS pretrained image", config)
        held = []
        for i, (colour, name) in enumerate(examples.HOLDOUT):
            file = f"pretrained-{i}.png"
            (file_server.root / file).write_bytes(examples.png_bytes(examples.colour_image(colour, 950 + i)))
            held.append((f"{file_server.url}/{file}", labels[0] if name == "Red" else labels[1]))
        tasks = ls_client.import_tasks(project["id"], [{"image": url} for url, _ in held])
        check_first_predictions(ls_client, backend, project["id"], model,
                                {task["id"]: label for task, (_, label) in zip(tasks, held, strict=True)})
    finally:
        backend.stop()
