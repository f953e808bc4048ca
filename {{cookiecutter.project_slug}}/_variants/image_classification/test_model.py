"""The image classifier itself: it learns from annotations and predicts the config's choices."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import os
import random
import re
import struct
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lsbackend import images
from lsbackend.ids import project_key
from lsbackend.label_config import ConfigError, check_fit
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings
from model import ImageClassifier

import examples
from conftest import EXAMPLES_CONFIG, captured, holdout_request
from harness import serve_in_thread, stop_serving

CONFIG = captured("setup_image")["schema"]
SHAPES_CONFIG = CONFIG.replace(
    '<Choice value="Red"/><Choice value="Blue"/>', '<Choice value="Circle"/><Choice value="Square"/>'
)
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS


@pytest.fixture(autouse=True)
def restore_pillow_limit():
    """Models set Pillow's pixel limit from their settings; put it back after each test."""
    yield
    Image.MAX_IMAGE_PIXELS = PILLOW_LIMIT


def annotations(pairs):
    return [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]


def trained(config: str = CONFIG, pairs=None, settings: Settings | None = None) -> ImageClassifier:
    model = ImageClassifier(config, settings=settings)
    output = model.fit(annotations(pairs or examples.training_set()))
    return ImageClassifier(config, train_output=output, model_version="v1", settings=settings)


def red(seed: int = 1) -> str:
    return examples.data_uri(examples.colour_image((215, 40, 40), seed))


def test_untrained_model_predicts_no_labels_and_downloads_nothing():
    tasks = captured("predict_image")["tasks"]  # its URLs would all fail: nothing is fetched
    predictions = ImageClassifier(CONFIG).predict(tasks)
    assert predictions == [{"result": [], "score": 0.0, "model_version": "untrained"} for _ in tasks]


def test_learns_colours_of_held_out_images():
    model = trained()
    data, labels = zip(*examples.holdout(), strict=True)
    predictions = model.predict([{"id": i, "data": d} for i, d in enumerate(data)])
    assert [examples.predicted_label(p) for p in predictions] == list(labels)


def test_learns_shapes_whatever_their_colour():
    shapes = [("Circle", "Square")[i % 2] for i in range(40)]
    images = [examples.data_uri(examples.shape_image(shape, i)) for i, shape in enumerate(shapes)]
    pairs = [({"image": image}, examples.result(shape)) for image, shape in zip(images, shapes, strict=True)]
    model = trained(SHAPES_CONFIG, pairs)
    held_out = [("Circle", "Square")[i % 2] for i in range(12)]
    tasks = [{"id": i, "data": {"image": examples.data_uri(examples.shape_image(s, 5000 + i))}} for i, s in
             enumerate(held_out)]
    predicted = [examples.predicted_label(p) for p in model.predict(tasks)]
    assert sum(p == s for p, s in zip(predicted, held_out, strict=True)) >= 11, predicted


def test_result_items_come_from_the_config():
    prediction = trained().predict([{"id": 1, "data": {"image": red()}}])[0]
    item = prediction["result"][0]
    assert (item["from_name"], item["to_name"], item["type"]) == ("choice", "image", "choices")
    assert item["value"] == {"choices": ["Red"]}
    assert 0.5 < prediction["score"] <= 1.0 and prediction["model_version"] == "v1"


def test_labels_removed_from_the_config_are_never_predicted():
    model = trained()
    narrowed = CONFIG.replace('<Choice value="Red"/>', '<Choice value="Green"/>')
    model = ImageClassifier(narrowed, train_output=model.train_output)
    prediction = model.predict([{"id": 1, "data": {"image": red()}}])[0]
    assert examples.predicted_label(prediction) == "Blue"


def test_training_with_one_label_fails_clearly():
    red_only = [p for p in examples.training_set() if p[1][0]["value"]["choices"] == ["Red"]]
    with pytest.raises(ValueError, match="at least 2 different labels"):
        ImageClassifier(CONFIG).fit(annotations(red_only))


def test_training_skips_images_that_fail_and_says_so(caplog):
    pairs = examples.training_set() + [({"image": "/data/upload/1/gone.png"}, examples.result("Red"))]
    with caplog.at_level(logging.WARNING):
        output = ImageClassifier(CONFIG).fit(annotations(pairs))
    assert output["trained_on"] == len(pairs) - 1
    assert len(output["skipped_images"]) == 1 and "set LABEL_STUDIO_URL" in output["skipped_images"][0]
    assert "training skips task" in caplog.text


def test_training_where_every_image_fails_names_the_first_cause():
    pairs = [({"image": f"s3://bucket/{i}.png"}, examples.result(("Red", "Blue")[i % 2])) for i in range(4)]
    with pytest.raises(ValueError, match="4 images failed to load, first: task 0: .*set LABEL_STUDIO_URL"):
        ImageClassifier(CONFIG).fit(annotations(pairs))


def test_one_broken_image_does_not_cost_the_others_their_predictions(caplog):
    tasks = [
        {"id": 1, "data": {"image": red()}},
        {"id": 2, "data": {"image": "/data/upload/1/blue.png"}},
        {"id": 3, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}},
        {"id": 4, "data": {"image": examples.data_uri(examples.colour_image((40, 60, 210), 7))}},
    ]
    with caplog.at_level(logging.WARNING, logger="lsbackend.media"):
        predictions = trained().predict(tasks)
    assert [examples.predicted_label(p) for p in predictions] == ["Red", None, None, "Blue"]
    assert "set LABEL_STUDIO_URL" in predictions[1]["error"]
    assert "not an image Pillow can read" in predictions[2]["error"]
    assert {p["model_version"] for p in predictions[1:3]} == {"v1+media-error"}
    assert "error" not in predictions[0] and predictions[0]["model_version"] == "v1"
    assert "task 2: no prediction" in caplog.text and "task 3: no prediction" in caplog.text


def huge_png(width: int, height: int) -> str:
    """A valid PNG of one black ``width`` x ``height`` image: small on the wire, huge once decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" + b"\0" * width  # filter byte + one grey byte per pixel
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    """A 12000x12000 PNG is 140 KB on the wire and 576 MB decoded as RGB: refused from its header, per task."""
    tasks = [{"id": 1, "data": {"image": huge_png(12000, 12000)}}, {"id": 2, "data": {"image": red()}}]
    predictions = trained(settings=Settings(media_max_pixels=100_000_000)).predict(tasks)
    assert "12000x12000 pixels (144.0 MP), over the 100 MP limit; resize it or raise MEDIA_MAX_MEGAPIXELS" in (
        predictions[0]["error"]
    )
    assert examples.predicted_label(predictions[1]) == "Red"


def test_pillows_own_limit_follows_the_setting_and_its_refusal_names_it():
    model = trained(settings=Settings(media_max_pixels=10_000))
    assert Image.MAX_IMAGE_PIXELS == 10_000
    prediction = model.predict([{"id": 1, "data": {"image": huge_png(300, 300)}}])[0]
    assert "resize it or raise MEDIA_MAX_MEGAPIXELS" in prediction["error"]


def test_captured_request_answers_every_task_even_when_some_images_fail(backend):
    """Label Studio's captured batch: an http URL, a /data/upload path and an s3:// URI."""
    client = create_app(backend).test_client()
    version = backend.store(project_key(captured("setup_image")["project"])).save_model(trained().train_output)
    body = captured("predict_image")
    body["tasks"][0]["data"]["image"] = red()
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert examples.predicted_label(results[0]) == "Red" and results[0]["model_version"] == version
    assert [r["result"] for r in results[1:]] == [[], []]
    assert "'/data/upload/1/blue.png' is served by Label Studio: set LABEL_STUDIO_URL" in results[1]["error"]
    assert "'s3://bucket/x.png' is served by Label Studio: set LABEL_STUDIO_URL" in results[2]["error"]


class ImageHost:
    """A loopback server standing in for Label Studio's /data/upload/, which needs the API key."""

    def __init__(self, files: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = files.get(self.path)
                status = 401 if self.headers.get("Authorization") != f"Token {TOKEN}" else 200 if body else 404
                body = body if status == 200 else b"{}"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = serve_in_thread(self.server)

    def close(self) -> None:
        stop_serving(self.server)


def test_trains_and_predicts_on_images_uploaded_to_label_studio():
    pairs = [(examples.colour_image(c, 300 + i), "Red") for i, c in enumerate(examples.RED)]
    pairs += [(examples.colour_image(c, 400 + i), "Blue") for i, c in enumerate(examples.BLUE)]
    files = {f"/data/upload/7/{i}.png": examples.png_bytes(image) for i, (image, _) in enumerate(pairs)}
    host = ImageHost(files)
    try:
        settings = Settings(label_studio_url=host.url, label_studio_api_key=TOKEN)  # handed over, not global
        model = trained(pairs=[({"image": f"/data/upload/7/{i}.png"}, examples.result(label))
                               for i, (_, label) in enumerate(pairs)], settings=settings)
        tasks = [{"id": i, "data": {"image": f"/data/upload/7/{i}.png"}} for i in (0, 9)]
        assert [examples.predicted_label(p) for p in model.predict(tasks)] == ["Red", "Blue"]
    finally:
        host.close()


@pytest.mark.parametrize(
    "config, phrase",
    [
        ('<View><Image name="i" value="$i"/><RectangleLabels name="b" toName="i"><Label value="Car"/>'
         "</RectangleLabels></View>", r"object detection \(model_type object_detection\)"),
        ('<View><Image name="i" value="$i"/><PolygonLabels name="b" toName="i"><Label value="Car"/>'
         "</PolygonLabels></View>", "segmentation, which needs a different model"),
        ('<View><Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="Car"/>'
         "</BrushLabels></View>", "segmentation, which needs a different model"),
        ('<View><Image name="i" value="$i"/><KeyPointLabels name="b" toName="i"><Label value="Eye"/>'
         "</KeyPointLabels></View>", "keypoint detection, which needs a different model"),
        ('<View><Image name="i" value="$i"/><TextArea name="c" toName="i"/></View>', "captioning"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="A"/><Choice value="B"/>'
         "</Choices></View>", "model_type text_classification"),
        ('<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="A"/></Choices></View>',
         "needs at least 2 Choice values"),
        ('<View><Image name="i" value="i"/><Choices name="c" toName="i"><Choice value="A"/><Choice value="B"/>'
         "</Choices></View>", 'must read a task field like value="\\$i"'),
        ('<View><Image name="i" value="$i"/><Choices name="c" toName="img"><Choice value="A"/><Choice value="B"/>'
         "</Choices></View>", "no object tag has that name"),
    ],
)
def test_configs_that_do_not_fit_are_refused_with_the_reason(config, phrase):
    with pytest.raises(ConfigError) as caught:
        check_fit(config, "image_classification")
    assert re.search(phrase, caught.value.explain()), caught.value.explain()


def test_a_batch_with_references_the_url_libraries_refuse_predicts_the_rest():
    """A space, a malformed IPv6 host or port, CR/LF, a NUL or a lone surrogate: that task's error only."""
    odd = ["http://[::1/x.png", "a\x00b.png", "http://h:abc/x.png", "/data/a b\r\n.png", "\ud800",
           "https://exa mple.com/x.png", "file:///x%00y.png"]
    good = examples.holdout()
    tasks = [{"id": i, "data": data} for i, (data, _) in enumerate(good)]
    tasks += [{"id": 100 + i, "data": {"image": ref}} for i, ref in enumerate(odd)]
    predictions = trained().predict(tasks)  # one of these used to fail the whole batch
    assert [examples.predicted_label(p) for p in predictions[: len(good)]] == [label for _, label in good]
    for prediction in predictions[len(good) :]:
        assert prediction["result"] == [] and prediction["error"]


# --- multi-label: <Choices choice="multiple"> ------------------------------------------------------------
MULTI_CONFIG = CONFIG.replace('<Choice value="Red"/><Choice value="Blue"/>',
                              '<Choice value="Red"/><Choice value="Blue"/><Choice value="Circle"/>'
                              '<Choice value="Square"/>').replace('<Choices ', '<Choices choice="multiple" ', 1)


def coloured_shape(colour: str, shape: str, seed: int) -> str:
    """A reddish or bluish circle or square on a grey background: two labels per picture."""
    rng = random.Random(seed)
    base = examples.RED if colour == "Red" else examples.BLUE
    image = Image.new("RGB", (examples.SIZE, examples.SIZE), (128, 128, 128))
    side = rng.randint(20, 30)
    x0, y0 = rng.randint(2, examples.SIZE - side - 2), rng.randint(2, examples.SIZE - side - 2)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "Circle" else draw.rectangle)((x0, y0, x0 + side, y0 + side),
                                                            fill=base[rng.randrange(len(base))])
    return examples.data_uri(image)


def multi_pairs(count: int, seed: int):
    combos = [("Red", "Circle"), ("Blue", "Square"), ("Red", "Square"), ("Blue", "Circle")]
    return [({"image": coloured_shape(c, s, seed + i)},
             [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [c, s]}}])
            for i, (c, s) in enumerate(combos[i % 4] for i in range(count))]


def test_multiple_choice_predicts_colour_and_shape_together():
    assert 'choice="multiple"' in MULTI_CONFIG
    model = trained(MULTI_CONFIG, multi_pairs(64, 1000))
    held = multi_pairs(16, 5000)
    predictions = model.predict([{"id": i, "data": d} for i, (d, _) in enumerate(held)])
    right = sum(p["result"] and p["result"][0]["value"]["choices"] == r[0]["value"]["choices"]
                for p, (_, r) in zip(predictions, held, strict=True))
    assert right >= 14, [p["result"] for p in predictions]
    assert all(p["result"][0]["score"] >= 0.5 for p in predictions if p["result"])


# --- starting from existing weights: MODEL_URI pointing at an ONNX network ----------------------------------
def optional(module: str):
    """An optional dependency of these tests: skipped locally without it, a failure under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed: pip install -r requirements-dev.txt")


def make_onnx_network(path, side: int = 16) -> list[str]:
    """A tiny "network" exported to ONNX like a PyTorch model would be: pixels [N, 3, side, side] in 0..1,
    class probabilities out, labels in the metadata. Built with skl2onnx (logistic regression on the
    pixels), so nothing is downloaded from a model hub."""
    onnx, skl2onnx = optional("onnx"), optional("skl2onnx")
    optional("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    colours = [(c, "Red") for c in examples.RED] + [(c, "Blue") for c in examples.BLUE]
    pixels = np.stack([np.asarray(examples.colour_image(c, 300 + i).resize((side, side)), dtype=np.float32) / 255.0
                       for i, (c, _) in enumerate(colours)]).transpose(0, 3, 1, 2)
    labels = [label for _, label in colours]
    classifier = LogisticRegression(max_iter=1000).fit(pixels.reshape(len(labels), -1), labels)
    flat = 3 * side * side
    model = skl2onnx.to_onnx(classifier, initial_types=[("flat", FloatTensorType([None, flat]))],
                             options={LogisticRegression: {"zipmap": False}}, target_opset=17)
    graph = model.graph  # put the network's usual image input in front: [N, 3, H, W] -> [N, 3*H*W]
    graph.initializer.append(numpy_helper.from_array(np.array([-1, flat], dtype=np.int64), "flat_shape"))
    graph.node.insert(0, helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 3, side, side]))
    classes = [str(c) for c in classifier.classes_]
    helper.set_model_props(model, {"labels": json.dumps(classes)})
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return classes


def test_an_onnx_network_from_model_uri_predicts_before_any_training(tmp_path):
    path = tmp_path / "colours.onnx"
    assert make_onnx_network(path) == ["Blue", "Red"]
    settings = Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG, model_uri=str(path))
    backend = Backend(ImageClassifier, settings)
    assert backend.pretrained.wait(60)
    client = create_app(backend).test_client()
    version = client.post("/setup", json=captured("setup_image")).get_json()["model_version"]
    assert version == "pretrained-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    response = client.post("/predict", json=holdout_request())
    assert response.status_code == 200, response.status
    results = response.get_json()["results"]
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
    assert {r["model_version"] for r in results} == {version} and all(0.5 < r["score"] <= 1 for r in results)


def test_an_onnx_model_without_an_image_input_is_refused_with_the_reason(tmp_path):
    optional("onnxruntime")
    skl2onnx = optional("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression().fit(np.eye(4, dtype=np.float32), ["a", "b", "a", "b"])
    path = tmp_path / "flat.onnx"
    path.write_bytes(skl2onnx.to_onnx(classifier, initial_types=[("x", FloatTensorType([None, 4]))],
                                      options={LogisticRegression: {"zipmap": False}},
                                      target_opset=17).SerializeToString())
    settings = Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG, model_uri=str(path))
    backend = Backend(ImageClassifier, settings)
    assert backend.pretrained.wait(60)
    response = create_app(backend).test_client().post("/predict", json=holdout_request())
    assert response.status_code == 503
    assert "the ONNX model needs an image input [batch, 3, height, width]" in response.status


def test_an_interactive_call_decodes_the_image_once_and_a_failure_is_not_kept(monkeypatch):
    """Each click of the annotator is a new call for the same task: the decoded image is kept (bounded),
    while a batch call and a failed load keep nothing."""
    model = trained()
    decoded, real_decode = [], images.decode_upright
    monkeypatch.setattr(images, "decode_upright", lambda *a: decoded.append(1) or real_decode(*a))
    (data, label), *_ = examples.holdout()
    task = {"id": 1, "data": data}
    answers = [model.predict([task], context={"result": []})[0] for _ in range(3)]
    assert len(decoded) == 1 and {examples.predicted_label(a) for a in answers} == {label}
    model.predict([task])
    assert len(decoded) == 2  # batch calls do not use the cache
    broken = {"id": 2, "data": {"image": "data:image/png;base64,AAAA"}}
    for _ in range(2):
        assert "not an image" in model.predict([broken], context={"result": []})[0]["error"]
    assert len(decoded) == 4 and len(model.task_cache) == 1
