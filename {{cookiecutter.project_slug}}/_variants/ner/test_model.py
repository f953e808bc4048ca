"""The entity recogniser itself: tokens and offsets, spans <-> BIO tags, learning, result items."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fake_label_studio import LEGACY_TOKEN, FakeLabelStudio
from hypothesis import given, settings
from hypothesis import strategies as st

import model
from lsbackend import TaskDataError
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings
from lsbackend.spans import align_span
from model import NamedEntityRecognizer, allowed_transitions, bio_tags, tag_spans, tokenize, viterbi

import examples
from conftest import EXAMPLES_CONFIG, captured

CONFIG = captured("setup_ner")["schema"]


def annotations(pairs):
    return [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]


@functools.cache
def trained() -> NamedEntityRecognizer:
    model = NamedEntityRecognizer(CONFIG)
    output = model.fit(annotations(examples.training_set()))
    return NamedEntityRecognizer(CONFIG, train_output=output, model_version="v1")


def words(text: str) -> list[str]:
    return [text[s:e] for s, e in tokenize(text)]


# --- tokens -------------------------------------------------------------------
def test_tokens_split_words_punctuation_and_scripts():
    assert words("Zoë's  café,\tJean-Luc!") == ["Zoë", "'", "s", "café", ",", "Jean", "-", "Luc", "!"]
    assert words("Cafe\u0301 🚀x") == ["Cafe\u0301", "🚀", "x"]  # combining accent stays in its word
    assert words("東京に行く") == ["東", "京", "に", "行", "く"]
    assert words("  \n ") == []


@given(st.text(max_size=60))
def test_tokens_are_exact_slices_covering_every_non_space_character(text):
    tokens = tokenize(text)
    assert all(0 <= s < e <= len(text) for s, e in tokens)
    assert all(a[1] <= b[0] for a, b in zip(tokens, tokens[1:], strict=False))
    covered = "".join(text[s:e] for s, e in tokens)
    assert covered == "".join(ch for ch in text if not ch.isspace())


# --- spans <-> BIO ------------------------------------------------------------
def test_spans_become_bio_tags_and_back():
    text = "Alice Smith met Bob in New York."
    tokens = tokenize(text)
    tags = bio_tags(tokens, [(0, 11, "PER"), (16, 19, "PER"), (23, 31, "LOC")])
    assert tags == ["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "I-LOC", "O"]
    spans = [(tokens[a][0], tokens[b][1], label) for a, b, label in tag_spans(tokens, tags)]
    expected = [("Alice Smith", "PER"), ("Bob", "PER"), ("New York", "LOC")]
    assert [(text[s:e], label) for s, e, label in spans] == expected


def test_a_span_cut_inside_a_word_covers_the_whole_word():
    tokens = tokenize("Alice Smith left")
    assert bio_tags(tokens, [(2, 8, "PER")]) == ["B-PER", "I-PER", "O"]


def test_overlapping_spans_keep_the_longer_one_whole():
    tokens = tokenize("the Bank of New York")
    tags = bio_tags(tokens, [(12, 20, "LOC"), (4, 20, "ORG"), (4, 8, "ORG")])
    assert tags == ["O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"]


def test_spans_over_whitespace_only_or_out_of_range_are_ignored():
    text = "a   b"
    assert bio_tags(tokenize(text), [(1, 4, "PER")]) == ["O", "O"]
    assert align_span(text, 3, 99, None) is None
    assert align_span(text, -1, 2, None) is None


def test_a_span_whose_text_disagrees_moves_to_the_nearest_occurrence():
    text = "🚀 Bob met Bob"
    assert align_span(text, 11, 14, "Bob") == (10, 13)  # offsets counted in UTF-16 units
    assert align_span(text, 2, 5, "Eve") is None


def test_stray_inside_tags_start_an_entity():
    tokens = tokenize("x y z")
    assert tag_spans(tokens, ["I-PER", "I-LOC", "O"]) == [(0, 0, "PER"), (1, 1, "LOC")]


def test_decoding_never_puts_an_inside_tag_after_outside_or_first():
    tags = ["O", "B-PER", "I-PER"]
    can_start = np.array([True, True, False])
    greedy_would_stray = np.log([[0.9, 0.05, 0.05], [0.3, 0.1, 0.6]])
    assert viterbi(greedy_would_stray, allowed_transitions(tags), can_start) == [0, 0]
    starts_inside = np.log([[0.2, 0.1, 0.7], [0.1, 0.1, 0.8]])
    assert viterbi(starts_inside, allowed_transitions(tags), can_start) == [1, 2]


# --- the model ---------------------------------------------------------------
def test_untrained_model_predicts_no_entities():
    tasks = captured("predict_ner")["tasks"]
    predictions = NamedEntityRecognizer(CONFIG).predict(tasks)
    assert [p["result"] for p in predictions] == [[] for _ in tasks]
    assert {p["model_version"] for p in predictions} == {"untrained"}


def test_learns_the_entities_of_held_out_texts():
    data, expected = zip(*examples.holdout(), strict=True)
    predictions = trained().predict([{"id": i, "data": d} for i, d in enumerate(data)])
    assert [examples.predicted_label(p) for p in predictions] == list(expected)


def test_result_items_mark_exact_text_with_a_score():
    text = "  Alice   Smith works at\tAcme Corp, in Paris!"
    prediction = trained().predict([{"id": 1, "data": {"text": text}}])[0]
    assert examples.predicted_label(prediction) == (("Alice   Smith", "PER"), ("Acme Corp", "ORG"), ("Paris", "LOC"))
    for item in prediction["result"]:
        value = item["value"]
        assert (item["from_name"], item["to_name"], item["type"]) == ("label", "text", "labels")
        assert text[value["start"] : value["end"]] == value["text"]
        assert 0.0 < item["score"] <= 1.0
    assert 0.0 < prediction["score"] <= 1.0 and prediction["model_version"] == "v1"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("Alice Bob Paris works at Acme.,-é東🚀\t\n ")), max_size=80))
def test_any_text_gets_sorted_non_overlapping_spans_that_slice_exactly(text):
    prediction = trained().predict([{"id": 1, "data": {"text": text}}])[0]
    values = [item["value"] for item in prediction["result"]]
    assert all(text[v["start"] : v["end"]] == v["text"] and v["text"] == v["text"].strip() for v in values)
    assert all(a["end"] <= b["start"] for a, b in zip(values, values[1:], strict=False))
    assert 0.0 <= prediction["score"] <= 1.0


def test_empty_text_gets_an_empty_result():
    assert trained().predict([{"id": 1, "data": {"text": " \n"}}])[0]["result"] == []


def test_training_keeps_going_past_odd_annotations():
    text = "Alice Smith works at Acme Corp in Paris."
    odd = [
        {"from_name": "label", "value": {"start": 0, "end": 99, "labels": ["PER"]}},  # past the end
        {"from_name": "other", "value": {"start": 0, "end": 5, "labels": ["PER"]}},  # another control
        {"from_name": "label", "value": {"start": 0, "end": 5, "labels": ["GPE"]}},  # not in the config
        {"from_name": "label", "value": {"labels": ["PER"]}},  # no offsets
        {"from_name": "label", "value": {"start": "0", "end": 5, "labels": ["PER"]}},  # not integers
    ]
    model = NamedEntityRecognizer(CONFIG)
    assert model.annotation_spans({"result": odd + examples.result(text, [(0, 11, "PER")])}, text) == [(0, 11, "PER")]
    model.fit(annotations([({"text": text}, odd + examples.result(text, [(0, 11, "PER")]))]))


def test_labels_removed_from_the_config_are_never_predicted():
    narrowed = CONFIG.replace('<Label value="PER"/>', "")
    model = NamedEntityRecognizer(narrowed, train_output=trained().train_output)
    prediction = model.predict([{"id": 1, "data": {"text": "Alice Smith works at Acme Corp in Paris."}}])[0]
    labels = [label for _, label in examples.predicted_label(prediction)]
    assert "PER" not in labels and "ORG" in labels


def test_training_without_entities_fails_clearly():
    pairs = [({"text": "Alice Smith works at Acme Corp."}, [])]
    with pytest.raises(ValueError, match="at least one entity"):
        NamedEntityRecognizer(CONFIG).fit(annotations(pairs))


def test_non_text_data_names_the_task_and_field():
    with pytest.raises(TaskDataError, match="Task 7 has non-text data in 'text'"):
        trained().predict([{"id": 7, "data": {"text": 42}}])


# --- long texts ---------------------------------------------------------------
def long_text(sentences: int) -> str:
    held = [data["text"] for data, _ in examples.holdout()]
    return " ".join(held[i % len(held)] for i in range(sentences))


def test_texts_are_classified_in_pieces_with_the_same_answers(monkeypatch):
    """Pieces of a few tokens, across and within texts, give exactly the whole-text answers."""
    texts = [long_text(12), "", "Alice", long_text(3), "  "]
    tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)]
    whole = trained().predict(tasks)
    monkeypatch.setattr(model, "CHUNK_TOKENS", 7)
    assert trained().predict(tasks) == whole
    assert any(p["result"] for p in whole), "the comparison needs predicted entities"


def test_a_text_over_the_limit_is_a_per_task_error_naming_the_setting():
    limited = NamedEntityRecognizer(CONFIG, train_output=trained().train_output, model_version="v1",
                                    settings=Settings(max_text_chars=100))
    tasks = [{"id": 1, "data": {"text": "Alice " * 40}}, {"id": 2, "data": {"text": "Alice Smith lives in Paris."}}]
    too_long, fine = limited.predict(tasks)
    assert too_long["result"] == [] and "error" not in fine
    assert too_long["error"] == (
        "task 1: text is 240 characters, over the 100 limit; split the task or raise MAX_TEXT_CHARS"
    )


def test_training_leaves_out_texts_over_the_limit(caplog):
    pairs = list(examples.training_set())
    pairs.append(({"text": "Zed " * 100}, pairs[0][1]))  # its span marks the wrong words, were it trained
    model = NamedEntityRecognizer(CONFIG, settings=Settings(max_text_chars=200))
    output = model.fit(annotations(pairs))
    assert output["trained_on"] == len(pairs) - 1
    assert f"training skips annotation {len(pairs) - 1}: its text is 400 characters" in caplog.text


def test_memory_while_predicting_a_long_text_stays_bounded():
    """Features of a 100,000-character text would take over 100 MB at once; in pieces they stay small."""
    import tracemalloc

    task = {"id": 1, "data": {"text": long_text(2000)[:100_000]}}
    model = trained()
    tracemalloc.start()
    try:
        model.predict([task])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 25 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_a_text_given_by_url_is_fetched_from_label_studio_and_predicted(tmp_path):
    """<Text valueType="url">: the task holds a link to the text (an upload on Label Studio here), which the
    model reads with the API key and predicts exactly as the same text given inline; a link that cannot be
    fetched costs only its own task, with the reason."""
    label_studio = FakeLabelStudio()
    try:
        (data, _), *_ = examples.holdout()
        label_studio.uploads["/data/upload/5/doc.txt"] = "\ufeff".encode() + data["text"].encode()
        settings = Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG,
                            label_studio_url=label_studio.url, label_studio_api_key=LEGACY_TOKEN)
        by_url = captured("setup_ner")["schema"].replace('value="$text"', 'value="$text" valueType="url"')
        client = create_app(Backend(NamedEntityRecognizer, settings)).test_client()
        assert client.post("/setup", json={**captured("setup_ner"), "schema": by_url}).status_code == 200
        inline = trained().predict([{"id": 1, "data": data}])[0]
        output = trained().train_output
        Backend(NamedEntityRecognizer, settings).store("5").save_model(output)
        tasks = [{"id": 1, "data": {"text": "/data/upload/5/doc.txt"}},
                 {"id": 2, "data": {"text": "/data/upload/5/missing.txt"}}]
        response = client.post("/predict", json={"tasks": tasks, "project": "5", "label_config": by_url})
        first, second = response.get_json()["results"]
        assert first["result"] == inline["result"] and first["result"], first
        assert second["result"] == [] and "404" in second["error"] and "missing.txt" in second["error"]
        assert f"Token {LEGACY_TOKEN}" in label_studio.auth_seen
    finally:
        label_studio.close()


# --- interactive: "label every other occurrence" -------------------------------------------------------------
def interactive_request() -> tuple[list[dict], dict]:
    request = captured("predict_interactive_span_ner")
    return request["tasks"], request["params"]["context"]


def test_the_labeled_span_is_proposed_at_its_other_whole_word_occurrences_even_untrained():
    tasks, context = interactive_request()
    [prediction] = NamedEntityRecognizer(CONFIG).predict(tasks, context=context)
    text = tasks[0]["data"]["text"]
    second = text.index("Acme Corp", 1)
    assert [(r["value"]["start"], r["value"]["text"], r["value"]["labels"]) for r in prediction["result"]] == [
        (second, "Acme Corp", ["ORG"])]  # not the span itself, not "ACME CORP"
    assert prediction["result"][0]["from_name"] == "label" and prediction["model_version"] == "untrained"


def test_match_case_false_also_proposes_other_capitalisations():
    tasks, context = interactive_request()
    model = NamedEntityRecognizer(CONFIG, extra_params={"match_case": False})
    found = [r["value"]["text"] for r in model.predict(tasks, context=context)[0]["result"]]
    assert found == ["Acme Corp", "ACME CORP"]


def test_a_trained_model_adds_its_entities_of_that_label_only():
    tasks, context = interactive_request()
    model = NamedEntityRecognizer(CONFIG, train_output=trained().train_output, model_version="v1")
    found = {(r["value"]["text"], r["value"]["labels"][0]) for r in model.predict(tasks, context=context)[0]["result"]}
    assert ("Globex", "ORG") in found and {label for _, label in found} == {"ORG"}
    assert len(model.task_cache) == 1  # the model's entities are kept for the next click on this task
    model.predict(tasks, context=context)
    assert model.task_cache.hits == 1


def test_match_case_must_be_a_boolean(client):
    body = {**captured("setup_ner"), "extra_params": {"match_case": "no"}}
    response = client.post("/setup", json=body)
    assert response.status_code == 422 and "match_case must be true or false" in response.status
