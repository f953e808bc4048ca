"""The base class's helpers a model's ``predict`` and ``fit`` lean on, whatever model ``model.py`` holds.

Classification from a probability matrix, result items as Label Studio stores them, one way to fail a
task, training data read from annotations (labels, texts, spans, boxes) with the unusable parts skipped
and counted, and images decoded behind the runtime's guards.
"""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest

from lsbackend.base import LabelStudioMLBase, TaskDataError
from lsbackend.media import MediaError
from lsbackend.settings import Settings

from conftest import ROOT

CHOICES = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
           '<Choice value="Positive" alias="pos"/><Choice value="Negative"/><Choice value="Neutral"/>'
           "</Choices></View>")
MULTI = CHOICES.replace('<Choices name="sentiment"', '<Choices name="sentiment" choice="multiple"')
SPANS = ('<View><Text name="text" value="$text"/><Labels name="label" toName="text">'
         '<Label value="Person" alias="PER"/><Label value="Place"/></Labels></View>')
BOXES = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
         '<Label value="Car"/><Label value="Tree"/></RectangleLabels></View>')
IMAGES = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="Red"/><Choice value="Blue"/></Choices></View>')


class Texts(LabelStudioMLBase):
    model_type = "text_classification"


class Spans(LabelStudioMLBase):
    model_type = "ner"


class Boxes(LabelStudioMLBase):
    model_type = "object_detection"


class Pictures(LabelStudioMLBase):
    model_type = "image_classification"


def chosen(prediction: dict) -> list[str]:
    return [c for item in prediction["result"] for c in item["value"]["choices"]]


# --- classification from a probability matrix -------------------------------------------------------------
def test_one_label_per_task_is_the_likeliest_label_still_in_the_config_stored_by_its_alias():
    model = Texts(CHOICES, model_version="v2")
    classes = ["Gone", "Positive", "Negative"]  # "Gone" was a label when the model was trained
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.4, 0.4]])
    first, second, tie = model.choice_predictions(rows, classes)
    assert chosen(first) == ["pos"] and first["score"] == pytest.approx(0.2)
    assert chosen(second) == ["Negative"] and second["result"][0]["score"] == pytest.approx(0.6)
    assert chosen(tie) == ["pos"]  # equal scores: the first class, as numpy's argmax picks
    assert second["model_version"] == "v2" and second["result"][0]["from_name"] == "sentiment"
    assert model.choice_predictions(rows.tolist(), classes) == [first, second, tie]  # lists work as arrays do


def test_below_the_score_threshold_the_result_is_empty_and_the_score_kept():
    model = Texts(CHOICES, extra_params={"score_threshold": 0.6})
    sure, unsure = model.choice_predictions(np.array([[0.8, 0.2], [0.45, 0.55]]), ["Positive", "Negative"])
    assert chosen(sure) == ["pos"]
    assert unsure == {"result": [], "score": pytest.approx(0.55), "model_version": "untrained"}


def test_classes_none_of_which_is_a_label_any_more_predict_nothing():
    model = Texts(CHOICES)
    assert model.known_labels(["Gone", "Positive"]) == ["Positive"] and model.known_labels(["Gone"]) == []
    assert model.choice_predictions([[0.9, 0.1]], ["Gone", "Other"]) == [model.prediction([])]


def test_several_labels_per_task_each_reaching_the_threshold_in_config_order_by_alias():
    model = Texts(MULTI)
    [prediction] = model.choice_predictions(np.array([[0.9, 0.2, 0.6]]), ["Neutral", "Negative", "Positive"])
    assert chosen(prediction) == ["pos", "Neutral"] and prediction["score"] == pytest.approx(0.6)


def test_a_score_threshold_of_zero_is_a_setting_not_an_absent_one():
    """Multi-label used to read 0 as "unset" and fall back to 0.5: every label's own 0 now keeps them all."""
    rows, classes = [[0.9, 0.2, 0.1]], ["Positive", "Negative", "Neutral"]
    assert chosen(Texts(MULTI).choice_predictions(rows, classes)[0]) == ["pos"]
    assert chosen(Texts(MULTI, extra_params={"score_threshold": 0}).choice_predictions(rows, classes)[0]) == [
        "pos", "Negative", "Neutral"]
    assert chosen(Texts(MULTI, extra_params={"score_threshold": None}).choice_predictions(rows, classes)[0]) == [
        "pos"]


def test_the_score_threshold_is_read_one_way_with_the_models_own_default():
    assert Texts(CHOICES).score_threshold == 0.0 and Texts(CHOICES).score_threshold_or(0.25) == 0.25
    given = Texts(CHOICES, extra_params={"score_threshold": 0})
    assert given.score_threshold == 0.0 and given.score_threshold_or(0.25) == 0.0
    assert Texts(CHOICES, extra_params={"score_threshold": 0.7}).score_threshold_or(0.25) == 0.7


# --- result items: labels as Label Studio stores them (the alias), scores optional -------------------------------
def test_multi_label_predictions_name_labels_by_their_alias_as_single_label_ones_do():
    model = Texts(MULTI)
    prediction = model.multi_label_prediction(["Positive", "Negative", "Neutral"], [0.9, 0.7, 0.8])
    (item,) = prediction["result"]
    assert item["value"]["choices"] == ["pos", "Negative", "Neutral"]  # config order; Label Studio stores the alias
    assert model.annotation_labels({"result": [item]}) == ["Positive", "Negative", "Neutral"]  # and reads it back
    assert model.choice_result("Positive", 0.9)["value"]["choices"] == ["pos"]


def test_a_span_needs_no_score_and_keeps_one_when_given():
    model = Spans(SPANS)
    greedy = model.span_result(0, 3, "Ann", "Person")
    assert "score" not in greedy and greedy["value"] == {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}
    assert model.span_result(0, 3, "Ann", "Place", 0.25)["score"] == 0.25


# --- one way to fail a task ---------------------------------------------------------------------------------------
def test_a_failed_task_has_no_regions_and_the_reason_and_media_errors_are_retried_later(caplog):
    model = Texts(CHOICES, model_version="v3")
    with caplog.at_level(logging.WARNING):
        plain = model.failed_task({"id": 7}, "text is 240 characters, over the 100 limit")
        media = model.failed_task({"id": 8}, MediaError("set LABEL_STUDIO_URL"))
    assert plain == {"result": [], "score": 0.0, "model_version": "v3",
                     "error": "text is 240 characters, over the 100 limit"}
    assert media == {"result": [], "score": 0.0, "model_version": "v3+media-error", "error": "set LABEL_STUDIO_URL"}
    assert "task 7: no prediction: text is 240" in caplog.text and "task 8: no prediction" in caplog.text


def test_predictions_for_predicts_the_good_inputs_only_and_fails_the_others_with_their_reason():
    model = Texts(CHOICES, model_version="v1")
    seen = []

    def predict(texts: list[str]) -> list[dict]:
        seen.extend(texts)
        return [model.prediction([], 0.5) for _ in texts]

    tasks = [{"id": i} for i in range(4)]
    loaded = ["a", MediaError("gone"), ValueError("too long"), "b"]
    predictions = model.predictions_for(tasks, loaded, predict)
    assert seen == ["a", "b"] and [p["score"] for p in predictions] == [0.5, 0.0, 0.0, 0.5]
    assert [p.get("error") for p in predictions] == [None, "gone", "too long", None]


# --- training data from annotations, the unusable parts skipped and counted -------------------------------------
def annotation(number: int, data: object, result: list[dict] | None = None) -> dict:
    return {"id": number, "result": result or [], "task": {"id": 100 + number, "data": data}}


def test_annotated_texts_leave_out_missing_non_text_and_too_long_ones_saying_why(caplog):
    model = Texts(CHOICES)
    given = [annotation(1, {"text": "fine"}), annotation(2, {"other": "x"}), annotation(3, {"text": 5}),
             annotation(4, {"text": "x" * 30})]
    with caplog.at_level(logging.WARNING):
        assert model.annotation_texts(given, max_chars=20) == ["fine", None, None, None]
    assert len(model.skipped) == 3 and "'text'" in model.skipped[0] and "non-text" in model.skipped[1]
    assert "30 characters, over MAX_TEXT_CHARS" in model.skipped[2]
    assert "training skips annotation 4: its text is 30 characters, over the 20 limit" in caplog.text
    assert model.annotation_texts(given[3:]) == ["x" * 30]  # no limit given: none applies


def test_labeled_annotations_map_aliases_back_and_skip_those_choosing_nothing():
    model = Texts(CHOICES)
    item = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}
    other = {**item, "from_name": "elsewhere"}
    given = [annotation(1, {"text": "a"}, [item]), annotation(2, {"text": "b"}, [other])]
    assert model.labeled_annotations(given) == [(given[0], ["Positive"])]
    assert model.skipped == ["annotation 2 (task 102): chooses nothing of <Choices name='sentiment'>"]


def test_annotated_spans_are_placed_in_the_text_and_unusable_ones_skipped():
    model = Spans(SPANS)
    text = "Ann met Bob in Rome"
    result = [{"from_name": "label", "value": {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}},
              {"from_name": "label", "value": {"start": 1, "end": 4, "text": "Rome", "labels": ["Place"]}},
              {"from_name": "label", "value": {"start": 8, "end": 11, "labels": ["Dog"]}},
              {"from_name": "label", "value": {"start": "8", "end": 11, "labels": ["Person"]}},
              {"from_name": "label", "value": {"start": 0, "end": 3, "text": "Zed", "labels": ["Person"]}}]
    assert model.annotation_spans(annotation(1, {"text": text}, result), text) == [(0, 3, "Person"),
                                                                                   (15, 19, "Place")]
    assert [reason.split(": ", 1)[1][:24] for reason in model.skipped] == [
        "a span with no label of ", "a span with offsets '8',", "a span at 0..3 that is n"]


def test_annotated_boxes_are_pixels_of_the_image_and_unusable_ones_skipped():
    model = Boxes(BOXES)
    box = {"from_name": "box", "value": {"x": 10, "y": 20, "width": 50, "height": 25, "rectanglelabels": ["Car"]}}
    rotated = {**box, "id": "r", "value": {**box["value"], "rotation": 30}}
    [car] = model.annotation_boxes(annotation(1, {}, [box, rotated]), 200, 100)
    assert (car.label, car.corners) == ("Car", pytest.approx((20, 20, 120, 45)))
    assert "box 'r' is rotated (30 degrees)" in model.skipped[0]
    assert model.annotation_boxes(annotation(2, {}, []), 200, 100) == []
    assert model.skipped[1].endswith("draws no box with <RectangleLabels name='box'>")


# --- images, decoded behind the runtime's guards (lsbackend/images.py, image variants only) -----------------------
needs_images = pytest.mark.skipif(not (ROOT / "lsbackend" / "images.py").exists(),
                                  reason="lsbackend/images.py and Pillow ship with the image variants only")


def png_uri(width: int, height: int, orientation: int | None = None) -> str:
    from PIL import Image

    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="PNG", exif=exif)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@needs_images
def test_task_images_are_upright_bounded_and_a_broken_one_is_its_tasks_error_only(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # put back after the test
    model = Pictures(IMAGES, settings=Settings(media_max_pixels=50_000))
    tasks = [{"id": 1, "data": {"image": png_uri(80, 40, orientation=6)}},
             {"id": 2, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}},
             {"id": 3, "data": {"image": png_uri(300, 300)}},
             {"id": 4, "data": {"image": png_uri(300, 100)}},
             {"id": 5, "data": {"image": png_uri(400, 400)}}]
    turned, broken, huge, wide, huger = model.task_images(tasks, max_side=60)
    assert (turned.width, turned.height, turned.image.size) == (40, 80, (30, 60))  # as Label Studio shows it
    assert "not an image Pillow can read" in str(broken)
    assert "300x300 pixels" in str(huge) and "raise MEDIA_MAX_MEGAPIXELS" in str(huge)  # read from the header
    assert "image refused" in str(huger) and "raise MEDIA_MAX_MEGAPIXELS" in str(huger)  # Pillow's own check
    assert (wide.width, wide.height, wide.image.size, wide.scale) == (300, 100, (60, 20), 0.2)
    assert Image.MAX_IMAGE_PIXELS == 50_000  # Pillow's own limit follows the setting


@needs_images
def test_task_images_refuse_a_task_without_a_reference_unless_training_and_keep_images_for_clicks():
    model = Pictures(IMAGES)
    with pytest.raises(TaskDataError, match="has no image URL or path in 'image'"):
        model.task_images([{"id": 1, "data": {"image": 5}}])
    given = [annotation(1, {"image": 5}), annotation(2, {"image": png_uri(8, 8)})]
    missing, fine = model.annotation_images(given)
    assert isinstance(missing, MediaError) and (fine.width, fine.height) == (8, 8)
    assert len(model.skipped) == 1 and "image not loaded" in model.skipped[0]
    task = {"id": 3, "data": {"image": png_uri(8, 8)}}
    first = model.task_images([task], keep=True)[0]
    assert model.task_images([task], keep=True)[0] is first and model.task_cache.hits == 1
    assert model.task_images([task])[0] is not first  # a batch call keeps nothing
