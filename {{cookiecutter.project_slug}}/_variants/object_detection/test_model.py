"""The object detector: Label Studio's box format, the trainable detector, and YOLO models exported to ONNX."""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from lsbackend.box_search import blob_boxes, correlation_map
from lsbackend.box_units import read_boxes, to_percent
from lsbackend.boxes import average_precision, best_threshold, iou, match, nms
from lsbackend.images import decode_upright
from lsbackend.label_config import ConfigError, check_fit, describe_fit, parse_label_config
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings
from model import ObjectDetector

import examples
from conftest import annotation_event, captured, wait_for_training

CONFIG = captured("setup_detection")["schema"]
PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS


@pytest.fixture(autouse=True)
def restore_pillow_limit():
    """Models set Pillow's pixel limit from their settings; put it back after each test."""
    yield
    Image.MAX_IMAGE_PIXELS = PILLOW_LIMIT


def annotations(pairs):
    return [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]


def trained(config: str = CONFIG, pairs=None) -> ObjectDetector:
    model = ObjectDetector(config)
    output = model.fit(annotations(pairs or examples.training_set()))
    return ObjectDetector(config, train_output=output, model_version="v1")


def png(image: Image.Image, orientation: int | None = None) -> str:
    """A data: URI of ``image``, with an EXIF orientation tag when given."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="PNG", exif=exif)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- the labeling config -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, phrase",
    [
        ('<View><Image name="i" value="$i"/><Rectangle name="b" toName="i"/></View>',
         "found Rectangle over Image.*use <RectangleLabels> with <Label> tags"),
        ('<View><Image name="i" value="$i"/><PolygonLabels name="b" toName="i"><Label value="Car"/>'
         "</PolygonLabels></View>", "<PolygonLabels> over <Image>: that is segmentation"),
        ('<View><Image name="a" value="$a"/><Image name="b" value="$b"/><RectangleLabels name="r" toName="a,b">'
         '<Label value="Car"/></RectangleLabels></View>', "must draw on one Image, not several"),
        ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"></RectangleLabels></View>',
         "needs at least 1 Label values, has 0"),
        ('<View><Image name="i" value="i"/><RectangleLabels name="r" toName="i"><Label value="Car"/>'
         "</RectangleLabels></View>", 'must read a task field like value="\\$i"'),
        ('<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="A"/><Choice value="B"/>'
         "</Choices></View>", r"model_type image_classification"),
    ],
)
def test_configs_that_do_not_fit_are_refused_with_a_working_example(config, phrase):
    with pytest.raises(ConfigError) as caught:
        check_fit(config, "object_detection")
    assert re.search(phrase, caught.value.explain(), re.DOTALL), caught.value.explain()
    assert "<RectangleLabels" in caught.value.example
    check_fit(caught.value.example, "object_detection")  # the example really works


def test_a_config_with_two_images_each_with_its_own_boxes_fits():
    config = ('<View><Image name="a" value="$a"/><RectangleLabels name="r" toName="a"><Label value="Car"/>'
              '</RectangleLabels><Image name="b" value="$b"/></View>')
    control, image = check_fit(config, "object_detection")
    assert (control.name, image.name) == ("r", "a")


# --- box arithmetic (lsbackend/boxes.py) -------------------------------------------------------------------
def test_percent_round_trip_and_clipping():
    assert to_percent((16, 8, 48, 40), 128, 64) == {"x": 12.5, "y": 12.5, "width": 25.0, "height": 50.0,
                                                   "rotation": 0}
    assert to_percent((-10, -5, 200, 70), 128, 64) == {"x": 0.0, "y": 0.0, "width": 100.0, "height": 100.0,
                                                      "rotation": 0}
    boxes, problems = read_boxes([examples.box_item((16, 8, 48, 40), "Square", 128, 64)], "label",
                                 {"Square": "Square"}.get, 128, 64)
    assert problems == [] and boxes[0].label == "Square" and boxes[0].corners == pytest.approx((16, 8, 48, 40))


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    corners = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7, 0.5])
    assert nms(corners, scores).tolist() == [1, 3]
    assert nms(corners, scores, np.array([0, 0, 1, 0])).tolist() == [1, 2, 3]
    assert iou(corners[:1], corners[1:2])[0, 0] == pytest.approx(90 / 110)


def test_thresholds_and_average_precision_follow_their_definitions():
    scores, hits = np.array([0.9, 0.8, 0.3, 0.2]), np.array([True, False, True, False])
    assert best_threshold(scores, hits, total=2) == (pytest.approx(0.3), pytest.approx(2 * 2 / (3 + 2)))
    assert average_precision(scores, hits, total=2) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    truth = np.array([[0, 0, 10, 10]])
    assert match(np.array([[0, 0, 10, 10], [0, 0, 10, 9]]), np.array([0.5, 0.9]), truth).tolist() == [False, True]


# --- the trainable detector ----------------------------------------------------------------------------------
def test_untrained_model_predicts_no_boxes_and_downloads_nothing():
    predictions = ObjectDetector(CONFIG).predict([{"id": 1, "data": {"image": "http://example.invalid/x.png"}}])
    assert predictions == [{"result": [], "score": 0.0, "model_version": "untrained"}]


def test_learns_to_find_and_name_objects_in_held_out_images():
    model = trained()
    held = [examples.scene(700 + i) for i in range(12)]
    predictions = model.predict([{"id": i, "data": {"image": examples.data_uri(image)}}
                                 for i, (image, _) in enumerate(held)])
    right = 0
    for prediction, (_, objects) in zip(predictions, held, strict=True):
        found = [(item["value"]["rectanglelabels"][0], item["value"]) for item in prediction["result"]]
        for label, _, (x1, y1, x2, y2) in objects:  # each object found, with its label, within 1.5 pixels
            pixels = [(name, v["x"] * 0.96, v["y"] * 0.64, (v["x"] + v["width"]) * 0.96, (v["y"] + v["height"]) * 0.64)
                      for name, v in found]
            right += any(name == label and np.abs(np.subtract(box, (x1, y1, x2, y2))).max() <= 1.5
                         for name, *box in pixels)
    total = sum(len(objects) for _, objects in held)
    assert right >= total - 1, (right, total)
    assert sum(len(p["result"]) for p in predictions) <= total + 1  # the distractor lines are not boxed


def test_predictions_are_in_label_studios_box_format():
    data, result = examples.annotated(900)
    prediction = trained().predict([{"id": 1, "data": data}])[0]
    assert set(prediction) == {"result", "score", "model_version"} and prediction["model_version"] == "v1"
    items = prediction["result"]
    assert items and len(items) == len(result)
    for item in items:
        assert set(item) == {"from_name", "to_name", "type", "value", "score", "original_width",
                             "original_height", "image_rotation"}
        assert (item["from_name"], item["to_name"], item["type"]) == ("label", "image", "rectanglelabels")
        assert (item["original_width"], item["original_height"], item["image_rotation"]) == (96, 64, 0)
        value = item["value"]
        assert set(value) == {"x", "y", "width", "height", "rotation", "rectanglelabels"}
        assert 0 <= value["x"] < value["x"] + value["width"] <= 100 and value["rotation"] == 0
        assert 0 <= value["y"] < value["y"] + value["height"] <= 100
        assert value["rectanglelabels"][0] in ("Square", "Circle") and 0.5 <= item["score"] <= 1
    assert prediction["score"] == pytest.approx(np.mean([item["score"] for item in items]))


def test_training_skips_rotated_and_malformed_boxes_and_says_why():
    data, result = examples.annotated(100)
    rotated = {**result[0], "id": "rot", "value": {**result[0]["value"], "rotation": 15}}
    unknown = {**result[0], "id": "unk", "value": {**result[0]["value"], "rectanglelabels": ["Triangle"]}}
    empty = {**result[0], "id": "zero", "value": {**result[0]["value"], "width": 0}}
    pairs = examples.training_set(12) + [(data, [rotated, unknown, empty]),
                                          ({"image": "/data/upload/1/gone.png"}, result)]
    model = ObjectDetector(CONFIG)
    output = model.fit(annotations(pairs))
    assert output["trained_on"] == 12
    reasons = "\n".join(model.skipped)
    assert "'rot' is rotated (15 degrees); only upright boxes train" in reasons
    assert "'unk' has no label of this config" in reasons and "'zero': box is empty" in reasons
    assert "image not loaded" in reasons and "set LABEL_STUDIO_URL" in reasons


def test_one_broken_image_does_not_cost_the_others_their_predictions():
    data, _ = examples.annotated(901)
    tasks = [{"id": 1, "data": data}, {"id": 2, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}}]
    first, broken = trained().predict(tasks)
    assert first["result"] and first["model_version"] == "v1"
    assert broken["result"] == [] and "not an image Pillow can read" in broken["error"]


def test_exif_orientation_is_applied_as_label_studio_displays_the_image():
    stored = Image.new("RGB", (40, 60), (255, 255, 255))
    stored.paste((0, 0, 0), (0, 0, 10, 20))  # a dark block at the stored image's top-left
    upright = decode_upright(base64.b64decode(png(stored, 6).split(",", 1)[1]), 10**6)
    assert (upright.width, upright.height) == (60, 40)  # orientation 6: turned 90 degrees clockwise on screen
    pixels = np.asarray(upright.image)
    assert pixels[:10, 40:].max() < 30 and pixels[:10, :40].min() > 200  # the block is now at the top-right


# --- YOLO exported to ONNX (MODEL_URI) ---------------------------------------------------------------------------
def optional(module: str):
    """An optional dependency of these tests: skipped locally without it, a failure under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed: pip install -r requirements-dev.txt")


NAMES = {0: "sq", 1: "circle", 2: "person"}
YOLO_CONFIG = CONFIG.replace('<Label value="Square"/>', '<Label value="Square" predicted_values="sq"/>')
#: Detections in the network's 64x64 input (x1, y1, x2, y2, class, score). For a 128x64 picture the letterbox
#: scales by 0.5 and pads 16 rows at the top, so (8, 20, 24, 36) is (16, 8, 48, 40) in the picture.
ANCHORS = [((8, 20, 24, 36), 0, 0.9), ((9, 20, 25, 36), 0, 0.8),  # an overlapping duplicate, suppressed
           ((8, 20, 24, 36), 1, 0.3),  # another class in the same place survives per-class NMS
           ((40, 24, 56, 40), 1, 0.6), ((30, 18, 40, 30), 2, 0.95),  # person: no label maps to it
           ((2, 40, 10, 46), 0, 0.1)]  # below the default 0.25


def write_onnx(path, body_nodes, output_shape, names=NAMES, input_shape=(1, 3, 64, 64)) -> None:
    """A YOLO-shaped ONNX model: input ``images``, output ``output0``, ultralytics' metadata (str-ed)."""
    onnx = optional("onnx")
    optional("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(body_nodes, "yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                  list(input_shape))],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output_shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": str(names), "imgsz": str(list(input_shape[2:])), "stride": "32",
                                   "task": "detect"})
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def constant_onnx(path, output: np.ndarray, names=NAMES) -> None:
    """Outputs ``output`` whatever the image, but still reads the image (output = mean(image) * 0 + output)."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0), "z")),
             helper.make_node("Constant", [], ["boxes"], value=numpy_helper.from_array(output.astype(np.float32), "b")),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "boxes"], ["output0"])]
    write_onnx(path, nodes, output.shape, names)


def raw_output(anchors=ANCHORS, classes: int = 3) -> np.ndarray:
    """``[1, 4 + classes, anchors]``: cx, cy, w, h in input pixels, then each class's score."""
    output = np.zeros((1, 4 + classes, len(anchors)))
    for i, ((x1, y1, x2, y2), cls, score) in enumerate(anchors):
        output[0, :4, i] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        output[0, 4 + cls, i] = score
    return output


def pretrained(path, config: str = YOLO_CONFIG, extra_params=None) -> ObjectDetector:
    return ObjectDetector(config, train_output=ObjectDetector.load_pretrained(path), model_version="pre",
                          extra_params=extra_params)


def boxes_of(prediction: dict) -> list[tuple]:
    return [(item["value"]["rectanglelabels"][0], round(item["value"]["x"], 6), round(item["value"]["y"], 6),
             round(item["value"]["width"], 6), round(item["value"]["height"], 6), round(item["score"], 6))
            for item in prediction["result"]]


WIDE = png(Image.new("RGB", (128, 64), (90, 120, 150)))
EXPECTED = [("Square", 12.5, 12.5, 25.0, 50.0, 0.9), ("Circle", 62.5, 25.0, 25.0, 50.0, 0.6),
            ("Circle", 12.5, 12.5, 25.0, 50.0, 0.3)]


def test_a_yolo_onnx_model_gives_exact_boxes_on_a_non_square_image(tmp_path):
    constant_onnx(tmp_path / "yolo.onnx", raw_output())
    prediction = pretrained(tmp_path / "yolo.onnx").predict([{"id": 1, "data": {"image": WIDE}}])[0]
    assert sorted(boxes_of(prediction), key=lambda b: -b[-1]) == EXPECTED
    assert {(i["original_width"], i["original_height"]) for i in prediction["result"]} == {(128, 64)}
    assert prediction["score"] == pytest.approx((0.9 + 0.6 + 0.3) / 3)


def test_yolo_boxes_follow_the_exif_orientation(tmp_path):
    constant_onnx(tmp_path / "yolo.onnx", raw_output())
    turned = png(Image.new("RGB", (64, 128), (90, 120, 150)), orientation=6)  # displayed as 128x64
    prediction = pretrained(tmp_path / "yolo.onnx").predict([{"id": 1, "data": {"image": turned}}])[0]
    assert sorted(boxes_of(prediction), key=lambda b: -b[-1]) == EXPECTED
    assert {(i["original_width"], i["original_height"]) for i in prediction["result"]} == {(128, 64)}


def test_the_end_to_end_format_with_nms_built_in(tmp_path):
    rows = np.zeros((1, 5, 6))
    rows[0, 0], rows[0, 1] = (8, 20, 24, 36, 0.9, 0), (40, 24, 56, 40, 0.6, 1)
    rows[0, 2] = (9, 20, 25, 36, 0.05, 0)  # under the threshold; the rest is padding
    constant_onnx(tmp_path / "e2e.onnx", rows)
    prediction = pretrained(tmp_path / "e2e.onnx").predict([{"id": 1, "data": {"image": WIDE}}])[0]
    assert boxes_of(prediction) == EXPECTED[:2]


def test_thresholds_from_extra_params_and_the_control(tmp_path):
    constant_onnx(tmp_path / "yolo.onnx", raw_output())
    task = [{"id": 1, "data": {"image": WIDE}}]
    high = pretrained(tmp_path / "yolo.onnx", extra_params={"score_threshold": 0.65}).predict(task)[0]
    assert [b[0] for b in boxes_of(high)] == ["Square"]
    configured = YOLO_CONFIG.replace('toName="image"', 'toName="image" model_score_threshold="0.5"')
    assert len(pretrained(tmp_path / "yolo.onnx", configured).predict(task)[0]["result"]) == 2
    low = pretrained(tmp_path / "yolo.onnx", extra_params={"score_threshold": 0.05}).predict(task)[0]
    assert len(low["result"]) == 4  # the 0.1 square too; the duplicate stays suppressed


def test_class_names_map_to_labels_exactly_case_blind_or_through_predicted_values(tmp_path):
    constant_onnx(tmp_path / "yolo.onnx", raw_output())
    task = [{"id": 1, "data": {"image": WIDE}}]
    plain = pretrained(tmp_path / "yolo.onnx", CONFIG).predict(task)[0]  # "sq" maps to nothing here
    assert sorted(b[0] for b in boxes_of(plain)) == ["Circle", "Circle"]
    people = CONFIG.replace('<Label value="Square"/>', '<Label value="Human" predicted_values="person, man"/>')
    assert sorted(b[0] for b in boxes_of(pretrained(tmp_path / "yolo.onnx", people).predict(task)[0])) == [
        "Circle", "Circle", "Human"]


def test_an_input_dependent_yolo_model_tells_images_apart(tmp_path):
    """Class scores are the image's mean red and mean blue: a red picture is a Square, a blue one a Circle."""
    from onnx import helper, numpy_helper

    box = numpy_helper.from_array(np.array([[[32], [32], [32], [32]]], dtype=np.float32), "box")
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["mean"]),
             helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, 3, 1]), "s")),
             helper.make_node("Reshape", ["mean", "shape"], ["colours"]),
             helper.make_node("Constant", [], ["red_blue"], value=numpy_helper.from_array(np.array([0, 2]), "i")),
             helper.make_node("Gather", ["colours", "red_blue"], ["scores"], axis=1),
             helper.make_node("Constant", [], ["box"], value=box),
             helper.make_node("Concat", ["box", "scores"], ["output0"], axis=1)]
    write_onnx(tmp_path / "colour.onnx", nodes, (1, 6, 1), {0: "square", 1: "circle"})
    model = pretrained(tmp_path / "colour.onnx", CONFIG)
    red, blue = (png(Image.new("RGB", (64, 64), colour)) for colour in ((250, 10, 10), (10, 10, 250)))
    found = model.predict([{"id": 1, "data": {"image": red}}, {"id": 2, "data": {"image": blue}}])
    assert [boxes_of(p) for p in found] == [[("Square", 25.0, 25.0, 50.0, 50.0, pytest.approx(250 / 255, abs=1e-5))],
                                             [("Circle", 25.0, 25.0, 50.0, 50.0, pytest.approx(250 / 255, abs=1e-5))]]


def test_a_model_uri_that_is_not_onnx_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"torch")
    with pytest.raises(ValueError, match="YOLO model exported to ONNX"):
        ObjectDetector.load_pretrained(path)


def test_training_a_yolo_model_learns_per_label_thresholds_through_the_server(tmp_path):
    """Annotations say the 0.3 circle over the square is wrong: training raises Circle's threshold past it,
    and the learnt thresholds survive being saved (the detector pickles as its ONNX bytes)."""
    path = tmp_path / "yolo.onnx"
    constant_onnx(path, raw_output())
    config_file = tmp_path / "config.xml"
    config_file.write_text(YOLO_CONFIG, encoding="utf-8")
    settings = Settings(model_dir=tmp_path / "models", label_config_path=config_file, model_uri=str(path),
                        train_debounce_seconds=0.2)
    backend = Backend(ObjectDetector, settings)
    assert backend.pretrained.wait(60)
    client = create_app(backend).test_client()
    setup = {**captured("setup_detection"), "schema": YOLO_CONFIG}
    version = client.post("/setup", json=setup).get_json()["model_version"]
    assert version == "pretrained-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    body = {**captured("predict_detection"), "label_config": YOLO_CONFIG}
    body["tasks"] = [{**body["tasks"][0], "id": 77, "data": {"image": WIDE}}]
    before = client.post("/predict", json=body).get_json()["results"][0]
    assert len(before["result"]) == 3
    truth = [examples.box_item((16, 8, 48, 40), "Square", 128, 64), examples.box_item((80, 16, 112, 48), "Circle",
                                                                                      128, 64, item_id="b1")]
    for i in range(3):
        event = annotation_event(i, {"image": WIDE}, truth)
        event["project"]["label_config"] = YOLO_CONFIG  # Label Studio sends the project's config
        client.post("/webhook", json=event)
    start = captured("webhook_start_training_detection")
    start["project"]["label_config"] = YOLO_CONFIG
    client.post("/webhook", json=start)
    project = setup["project"].split(".")[0]
    status = wait_for_training(client, project)
    assert status["state"] == "succeeded", status
    after = client.post("/predict", json=body).get_json()["results"][0]
    assert boxes_of(after) == EXPECTED[:2] and after["model_version"] == status["model_version"]
    saved = backend.store(project).load_model()[1]
    assert saved["thresholds"] == {"Square": pytest.approx(0.9), "Circle": pytest.approx(0.6)}
    assert saved["f1_at_threshold"] == {"Square": 1.0, "Circle": 1.0}


# --- interactive pre-annotation (smart tools) ------------------------------------------------------------------
SMART_CONFIG = captured("predict_interactive_keypoint_detection")["label_config"]
SCENE = {"id": 5, "data": {"image": examples.data_uri(examples.interactive_scene())}}
SQUARE, OTHER_SQUARES, CIRCLE = (examples.INTERACTIVE_OBJECTS[0][1], [c for _, c in examples.INTERACTIVE_OBJECTS[1:3]],
                                 examples.INTERACTIVE_OBJECTS[3][1])


@pytest.fixture(scope="module")
def smart():
    """The trainable detector, trained once for these tests, behind the smart config."""
    return ObjectDetector(SMART_CONFIG, train_output=ObjectDetector(SMART_CONFIG).fit(
        annotations(examples.training_set())), model_version="v1")


def drawn(corners, label: str, size=(examples.WIDTH, examples.HEIGHT)) -> dict:
    return {"result": [examples.box_item(corners, label, *size, item_id="drawn")]}


def clicked(*points: tuple[float, float, bool], label: str = "Circle", size=(examples.WIDTH, examples.HEIGHT)) -> dict:
    return {"result": [{"id": f"k{i}", "type": "keypointlabels", "from_name": "point", "to_name": "image",
                        "original_width": size[0], "original_height": size[1], "is_positive": positive,
                        "value": {"x": 100 * x / size[0], "y": 100 * y / size[1], "width": 0.6,
                                  "keypointlabels": [label]}}
                       for i, (x, y, positive) in enumerate(points)]}


def found(prediction: dict) -> list[tuple[str, tuple[float, ...]]]:
    return [(item["value"]["rectanglelabels"][0], examples.pixel_corners(item)) for item in prediction["result"]]


def test_a_detection_config_takes_a_smart_keypoint_tool_beside_its_boxes():
    config = parse_label_config(SMART_CONFIG)
    control, image = check_fit(config, "object_detection")
    assert (control.name, image.name) == ("label", "image")
    assert describe_fit(config, control, image).endswith(
        "interactions: RectangleLabels 'label' (smart tool), KeyPointLabels 'point' (smart tool)")


def test_a_drawn_box_is_labeled_by_the_model_and_the_objects_like_it_are_proposed(smart):
    [prediction] = smart.predict([SCENE], context=drawn(SQUARE, "Circle"))  # the annotator picked the wrong label
    boxes = found(prediction)
    assert boxes[0] == ("Square", pytest.approx(SQUARE))  # the drawn box itself, as the model names it
    assert [label for label, _ in boxes] == ["Square"] * 3  # the two other squares; the circle is not like it
    assert sorted(corners for _, corners in boxes[1:]) == [pytest.approx(c, abs=1) for c in sorted(OTHER_SQUARES)]
    assert prediction["model_version"] == "v1" and 0.5 < prediction["score"] < 1


def test_a_drawn_box_around_the_circle_finds_no_squares(smart):
    [prediction] = smart.predict([SCENE], context=drawn(CIRCLE, "Square"))
    assert found(prediction) == [("Circle", pytest.approx(CIRCLE))]


def test_a_click_gives_the_box_of_the_object_under_it_labeled_by_the_model(smart):
    [prediction] = smart.predict([SCENE], context=clicked((77.5, 47.5, True), label="Square"))
    [(label, corners)] = found(prediction)
    assert label == "Circle" and corners == pytest.approx(CIRCLE, abs=1)
    [(label, corners)] = found(smart.predict([SCENE], context=clicked((23.5, 14, True)))[0])  # just beside it
    assert label == "Square" and corners == pytest.approx(SQUARE, abs=1)


def test_negative_clicks_leave_their_object_out_and_background_clicks_find_nothing(smart):
    both = clicked((14, 14, True), (68, 16, True), (66, 12, False))
    assert [corners for _, corners in found(smart.predict([SCENE], context=both)[0])] == [pytest.approx(SQUARE, abs=1)]
    assert smart.predict([SCENE], context=clicked((14, 14, True), (10, 18, False)))[0]["result"] == []
    assert smart.predict([SCENE], context=clicked((50, 30, True)))[0]["result"] == []


def test_without_a_trained_model_the_annotators_label_is_kept():
    model = ObjectDetector(SMART_CONFIG)
    [(label, corners)] = found(model.predict([SCENE], context=clicked((77.5, 47.5, True)))[0])
    assert label == "Circle" and corners == pytest.approx(CIRCLE, abs=1)
    prediction = model.predict([SCENE], context=drawn(SQUARE, "Square"))[0]
    assert [label for label, _ in found(prediction)] == ["Square"] * 3
    assert prediction["result"][0]["score"] == 1.0  # the annotator's label, not a model's guess


def test_an_image_that_does_not_load_gives_an_empty_suggestion_saying_why(smart):
    broken = {"id": 9, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    misses = smart.task_cache.misses
    for _ in range(2):  # a failure is not kept: the next click tries again
        [prediction] = smart.predict([broken], context=clicked((10, 10, True)))
        assert prediction["result"] == [] and "image" in prediction["error"]
    assert smart.task_cache.misses == misses + 2


def test_opening_a_task_or_no_context_gives_the_batch_prediction(smart):
    batch = smart.predict([SCENE])
    assert len(batch[0]["result"]) == 4
    assert smart.predict([SCENE], context={"result": []}) == batch
    assert smart.predict([SCENE], context=None) == batch


def test_each_click_on_a_task_reuses_its_decoded_image(smart, monkeypatch):
    model = ObjectDetector(SMART_CONFIG, train_output=smart.train_output, model_version="v1")
    fetched = []
    fetch_many = model.media_resolver.fetch_many
    monkeypatch.setattr(model.media_resolver, "fetch_many", lambda refs: fetched.append(1) or fetch_many(refs))
    first = model.predict([SCENE], context=clicked((77.5, 47.5, True)))
    assert model.predict([SCENE], context=clicked((77.5, 47.5, True))) == first
    model.predict([SCENE], context=drawn(SQUARE, "Square"))
    assert len(fetched) == 1 and model.task_cache.hits == 2


def test_a_yolo_model_names_a_drawn_box_by_the_detection_overlapping_it_most(tmp_path):
    constant_onnx(tmp_path / "yolo.onnx", raw_output())
    model = pretrained(tmp_path / "yolo.onnx", config=YOLO_CONFIG.replace('name="label" toName="image"',
                                                                          'name="label" toName="image" smart="true"'))
    wide = {"id": 1, "data": {"image": WIDE}}
    prediction = model.predict([wide], context=drawn((78, 14, 110, 46), "Square", (128, 64)))[0]  # on the Circle
    item = prediction["result"][0]
    assert item["value"]["rectanglelabels"] == ["Circle"] and item["score"] == pytest.approx(0.6)
    assert (item["value"]["x"], item["value"]["width"]) == pytest.approx((100 * 78 / 128, 100 * 32 / 128))
    nowhere = model.predict([wide], context=drawn((114, 50, 126, 62), "Square", (128, 64)))[0]  # no detection
    assert nowhere["result"][0]["value"]["rectanglelabels"] == ["Square"] and nowhere["result"][0]["score"] == 1.0


# --- box search (lsbackend/box_search.py) ---------------------------------------------------------------------
def test_correlation_ignores_brightness_and_contrast_and_finds_the_template_where_it_is():
    rng = np.random.default_rng(0)
    pixels = rng.random((20, 30, 3))
    pixels[10:16, 20:28] = pixels[2:8, 3:11] * 0.5 + 0.3  # a dimmer, shifted copy of one patch
    scores = correlation_map(pixels, pixels[2:8, 3:11])
    assert scores.shape == (15, 23) and scores[2, 3] == pytest.approx(1) and scores[10, 20] == pytest.approx(1)
    assert np.abs(np.delete(scores.ravel(), [2 * 23 + 3, 10 * 23 + 20])).max() < 0.9
    assert correlation_map(np.ones((8, 8)), np.eye(3)).max() == 0  # a flat image matches nothing


def test_blob_boxes_reach_a_click_beside_an_object_and_skip_excluded_ones():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:5, 3:9], mask[10:18, 10:12] = True, True
    assert blob_boxes(mask, [(4, 3)]).tolist() == [[3, 2, 9, 5]]
    assert blob_boxes(mask, [(13.5, 14)]).tolist() == [[10, 10, 12, 18]]  # 2 pixels right of the thin bar
    assert blob_boxes(mask, [(19, 0)]).tolist() == []  # too far from anything
    assert blob_boxes(mask, [(4, 3), (11, 11)], [(10, 17)]).tolist() == [[3, 2, 9, 5]]
