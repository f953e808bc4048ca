"""Interactive pre-annotation in the runtime: parsing what Label Studio sends, config checks, cache, metric."""

from __future__ import annotations

import copy
import re

import pytest

from lsbackend.interaction import InteractionError, TaskCache, find_occurrences, parse_interaction
from lsbackend.label_config import ConfigError, check_fit, describe_fit, parse_label_config, prompt_controls

from conftest import SHAPE, captured


def context_of(name: str) -> dict:
    return captured(name)["params"]["context"]


# --- "no interaction" has three spellings -------------------------------------------------------------
@pytest.mark.parametrize("context", [None, {}, {"result": []}, {"result": None}], ids=repr)
def test_no_interaction_is_none_however_it_is_spelled(context):
    assert parse_interaction(context) is None


def test_opening_a_task_as_captured_from_label_studio_is_no_interaction():
    assert parse_interaction(context_of("predict_text_interactive")) is None


# --- the captured shapes (tests/runtime/protocol/README.md) -----------------------------------------------------
def test_a_keypoint_prompt_gives_its_pixel_position_and_whether_it_is_positive():
    interaction = parse_interaction(context_of("predict_interactive_keypoint_image"))
    positive, negative = interaction.points
    assert (positive.label, positive.positive, positive.pixel_point()) == ("Red", True, (20.0, 20.0))
    assert (negative.positive, negative.pixel_point()) == (False, (2.0, 2.0))
    assert (positive.from_name, positive.to_name, positive.kind) == ("point", "image", "point")
    assert positive.pixel_box() is None  # a keypoint has a position, not an extent


def test_a_rectangle_gives_percent_and_pixel_coordinates():
    [box] = parse_interaction(context_of("predict_interactive_rectangle_image")).boxes
    assert (box.x, box.y, box.width, box.height, box.label) == (12.5, 20.0, 50.0, 37.5, "Red")
    assert box.pixel_box() == (5.0, 8.0, 20.0, 15.0)  # of a 40 x 40 image


def test_a_span_gives_offsets_text_and_label():
    [span] = parse_interaction(context_of("predict_interactive_span_ner")).spans
    assert (span.start, span.end, span.text, span.label, span.kind) == (0, 9, "Acme Corp", "ORG", "span")


def test_a_textarea_gives_the_prompt_text():
    interaction = parse_interaction(context_of("predict_interactive_prompt_text"))
    assert interaction.prompt == "Is the reviewer happy?" and interaction.spans == []


def test_a_box_without_the_image_size_has_no_pixels_but_keeps_percent():
    context = copy.deepcopy(context_of("predict_interactive_rectangle_image"))
    del context["result"][0]["original_width"]
    [box] = parse_interaction(context).boxes
    assert box.pixel_box() is None and box.x == 12.5


BAD_CONTEXTS = {
    "not an object": ("result", "params.context must be an object"),
    "result not a list": ({"result": {"x": 1}}, "must be a list of regions"),
    "region not an object": ({"result": [7]}, "result[0] must be an object"),
    "no type": ({"result": [{"value": {}}]}, "needs a 'type' string and a 'value' object"),
    "unknown type": ({"result": [{"type": "choices", "value": {}}]}, "which is no interactive region"),
    "keypoint without x": ({"result": [{"type": "keypointlabels", "value": {"y": 1}}]}, "value.x must be a number"),
    "coordinate a string": ({"result": [{"type": "rectangle", "value": {"x": "1", "y": 1, "width": 1,
                                                                       "height": 1}}]}, "value.x must be a number"),
    "span offsets reversed": ({"result": [{"type": "labels", "value": {"start": 5, "end": 2}}]}, "before its start"),
    "span offset negative": ({"result": [{"type": "labels", "value": {"start": -1, "end": 2}}]}, "character offset"),
    "labels not strings": ({"result": [{"type": "labels", "value": {"start": 0, "end": 2, "labels": [1]}}]},
                           "list of strings"),
    "image size nonsense": ({"result": [{"type": "keypoint", "original_width": 0, "value": {"x": 1, "y": 1}}]},
                            "original_width must be a positive number of pixels"),
    "too many regions": ({"result": [{"type": "textarea", "value": {"text": "x"}}] * 1001}, "over 1000"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTEXTS))
def test_a_malformed_interaction_names_the_item_and_field(case):
    context, message = BAD_CONTEXTS[case]
    with pytest.raises(InteractionError, match=re.escape(message)):
        parse_interaction(context)


def test_a_malformed_interaction_is_a_422_with_the_reason(client):
    body = captured(f"predict_{SHAPE}")
    body["params"] = {"context": {"result": [{"type": "keypointlabels", "value": {"y": 1}}]}}
    response = client.post("/predict", json=body)
    assert response.status_code == 422 and "value.x must be a number" in response.status, response.status


# --- occurrences, for "label every other occurrence" -----------------------------------------------------
def test_occurrences_are_whole_words_in_the_case_asked():
    text = "Acme Corp, acme corp and Acme Corporation; (Acme Corp)"
    assert find_occurrences(text, "Acme Corp") == [(0, 9), (44, 53)]
    assert find_occurrences(text, "Acme Corp", match_case=False) == [(0, 9), (11, 20), (44, 53)]
    assert find_occurrences(text, "  ") == [] and find_occurrences("a.b a.b", "a.b") == [(0, 3), (4, 7)]


# --- the per-task cache -----------------------------------------------------------------------------------
def test_the_task_cache_computes_once_and_drops_the_least_recently_used():
    cache, calls = TaskCache(capacity=2), []

    def compute(key):
        return lambda: calls.append(key) or key.upper()

    assert [cache.get_or_compute(k, compute(k)) for k in ("a", "b", "a", "c", "a", "b")] == list("ABACAB")
    assert calls == ["a", "b", "c", "b"] and len(cache) == 2  # b was the least recently used when c came
    assert (cache.hits, cache.misses) == (2, 4)


def test_a_failed_computation_is_not_cached():
    cache = TaskCache()
    with pytest.raises(ZeroDivisionError):
        cache.get_or_compute("k", lambda: 1 / 0)
    assert cache.get_or_compute("k", lambda: 5) == 5


# --- config checks: which control is which ----------------------------------------------------------------
SMART_IMAGE = ('<View><Image name="image" value="$image"/><Image name="other" value="$other"/>'
               '<Choices name="choice" toName="image"><Choice value="A"/><Choice value="B"/></Choices>'
               '<KeyPointLabels name="point" toName="image" smart="true"><Label value="A"/></KeyPointLabels>'
               '<RectangleLabels name="box" toName="image" smartOnly="true"><Label value="A"/></RectangleLabels>'
               '<TextArea name="note" toName="other"/></View>')


def test_prompt_controls_beside_the_output_control_are_accepted_and_named():
    config = parse_label_config(SMART_IMAGE)
    control, obj = check_fit(config, "image_classification")
    assert [c.name for c in prompt_controls(config, control, obj)] == ["point", "box"]
    assert describe_fit(config, control, obj) == (
        "Choices 'choice' over Image 'image' ($image); interactions: KeyPointLabels 'point' (smart tool), "
        "RectangleLabels 'box' (smart tool)")


def test_spans_and_textarea_prompts_are_the_interactions_of_text():
    config = parse_label_config('<View><Text name="text" value="$text"/><Labels name="label" toName="text">'
                                '<Label value="ORG"/></Labels><TextArea name="prompt" toName="text"/></View>')
    assert describe_fit(config, *check_fit(config, "ner")).endswith(
        "interactions: Labels 'label' (spans the annotator labels), TextArea 'prompt' (prompt text)")


def test_a_smart_tool_over_another_object_is_refused_naming_both():
    config = SMART_IMAGE.replace('name="point" toName="image"', 'name="point" toName="other"')
    with pytest.raises(ConfigError) as caught:
        check_fit(config, "image_classification")
    assert caught.value.reason == "KeyPointLabels 'point' is a smart tool over Image 'other', not over Image 'image'"
    assert 'set toName="image"' in caught.value.detail and "<Choices" in caught.value.example


def test_an_ordinary_tool_over_another_object_is_not_an_interaction():
    config = SMART_IMAGE.replace('toName="image" smart="true"', 'toName="other"')
    control, obj = check_fit(config, "image_classification")
    assert [c.name for c in prompt_controls(parse_label_config(config), control, obj)] == ["box"]


# --- the metric -----------------------------------------------------------------------------------------
def test_interactive_calls_have_their_own_latency_metric(client):
    body = captured(f"predict_{SHAPE}")
    body["tasks"] = body["tasks"][:1]
    for context in (None, {"result": []}):
        body["params"] = {"context": context}
        assert client.post("/predict", json=body).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'lsbackend_interactive_duration_seconds_count{kind="open"} 1.0' in metrics
    assert 'lsbackend_interactive_duration_seconds_count{kind="region"}' not in metrics  # batch calls not counted


def test_a_smart_output_control_is_its_own_interaction():
    """A detection-style config: the smart RectangleLabels the model fills also sends the boxes drawn with it."""
    config = parse_label_config(SMART_IMAGE)
    box = next(c for c in config.controls if c.name == "box")
    assert [c.name for c in prompt_controls(config, box, config.objects["image"])] == ["point", "box"]
    assert describe_fit(config, box, config.objects["image"]).endswith(
        "interactions: KeyPointLabels 'point' (smart tool), RectangleLabels 'box' (smart tool)")
