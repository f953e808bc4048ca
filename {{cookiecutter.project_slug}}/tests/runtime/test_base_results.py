"""Result items the base class builds for every model: labels as Label Studio stores them, scores optional."""

from __future__ import annotations

from lsbackend.base import LabelStudioMLBase

MULTI = ('<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
         '<Choice value="Sports" alias="sp"/><Choice value="Politics" alias="po"/><Choice value="Arts"/>'
         "</Choices></View>")
SPANS = ('<View><Text name="text" value="$text"/><Labels name="label" toName="text">'
         '<Label value="Person" alias="PER"/><Label value="Place"/></Labels></View>')


class Topics(LabelStudioMLBase):
    model_type = "text_classification"


class Spans(LabelStudioMLBase):
    model_type = "ner"


def test_multi_label_predictions_name_labels_by_their_alias_as_single_label_ones_do():
    model = Topics(MULTI)
    prediction = model.multi_label_prediction(["Sports", "Politics", "Arts"], [0.9, 0.7, 0.8])
    (item,) = prediction["result"]
    assert item["value"]["choices"] == ["sp", "po", "Arts"]  # config order; Label Studio stores the alias
    assert model.annotation_labels({"result": [item]}) == ["Sports", "Politics", "Arts"]  # and reads it back
    assert model.choice_result("Sports", 0.9)["value"]["choices"] == ["sp"]


def test_a_span_needs_no_score_and_keeps_one_when_given():
    model = Spans(SPANS)
    greedy = model.span_result(0, 3, "Ann", "Person")
    assert "score" not in greedy and greedy["value"] == {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}
    assert model.span_result(0, 3, "Ann", "Place", 0.25)["score"] == 0.25
