"""Property-based tests: arbitrary input never gets past the runtime's own error handling.

- the config parser answers any text with a parse or a ConfigError, nothing else;
- /predict, /setup and /webhook answer any JSON body with a 2xx or a 4xx, never a 5xx.

Budgets are small (the suite shares two cores); raise ``max_examples`` locally to dig deeper.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lsbackend.label_config import CONTROL_TAGS, OBJECT_TAGS, REQUIREMENTS, ConfigError, check_fit, parse_label_config
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings

from conftest import EXAMPLES_CONFIG, MODEL_CLASS, SHAPE, captured

pytestmark = pytest.mark.slow  # hundreds of generated inputs per test (Hypothesis)

FEW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the config parser -------------------------------------------------------------------------------
TAG_NAMES = st.sampled_from(
    ["View", "Choice", "Label", "Header", "x", "a:b"] + sorted(CONTROL_TAGS.values()) + sorted(OBJECT_TAGS.values())
)
ATTR_NAMES = st.sampled_from(["name", "toName", "value", "alias", "choice", "x"])
ATTR_VALUES = st.one_of(
    st.sampled_from(["text", "image", "$text", "$image", "label", "text,image", "", "$", " , ", "&amp;"]),
    st.text(alphabet=st.characters(blacklist_characters='"<&', blacklist_categories=("Cs",)), max_size=8),
)


def _element(children: st.SearchStrategy) -> st.SearchStrategy:
    def render(tag: str, attrs: dict, kids: list) -> str:
        attr_text = "".join(f' {k}="{v}"' for k, v in attrs.items())
        return f"<{tag}{attr_text}>{''.join(kids)}</{tag}>" if kids else f"<{tag}{attr_text}/>"

    attrs = st.dictionaries(ATTR_NAMES, ATTR_VALUES, max_size=3)
    return st.builds(render, TAG_NAMES, attrs, st.lists(children, max_size=4))


XMLISH = st.recursive(st.sampled_from(["", "text", "<!-- c -->", "&lt;"]), _element, max_leaves=12)
GARBLED = st.builds(
    lambda xml, cut, junk: xml[:cut] + junk + xml[cut:],
    XMLISH,
    st.integers(0, 200),
    st.sampled_from(["", "<", ">", "&", "<!DOCTYPE x>", "\x00", "\ud800", "]]>", "<?pi?>"]),
)


def _parse_and_fit(text: str) -> None:
    try:
        config = parse_label_config(text)
    except ConfigError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    config.as_dict()
    for model_type in REQUIREMENTS:
        try:
            check_fit(config, model_type)
        except ConfigError as exc:
            assert exc.reason and "\n" not in exc.reason


@FEW
@given(st.text(st.characters(exclude_categories=()), max_size=300))
def test_any_text_parses_or_is_a_config_error(text):
    _parse_and_fit(text)


@FEW
@given(st.one_of(XMLISH, GARBLED))
def test_xmlish_text_parses_or_is_a_config_error(text):
    _parse_and_fit(text)


# --- request bodies -----------------------------------------------------------------------------------
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)  # lone surrogates too: JSON can carry them
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
CONFIG = captured(f"setup_{SHAPE}")["schema"]
PROJECTS = st.one_of(JSON, st.sampled_from([1, "1.23", "default", {"id": 2}, {"id": "x/y"}, "../..", ""]))
TASKS = st.lists(
    st.fixed_dictionaries(
        {"data": st.one_of(st.dictionaries(st.sampled_from(["text", "image", "x"]), JSON, max_size=3), JSON)},
        optional={"id": JSON, "project": PROJECTS},
    ),
    max_size=3,
) | JSON
PREDICT = st.fixed_dictionaries(
    {},
    optional={
        "tasks": TASKS,
        "project": PROJECTS,
        "label_config": st.one_of(st.just(CONFIG), XMLISH, JSON),
        "params": st.one_of(JSON, st.fixed_dictionaries({"context": JSON})),
    },
)
ANNOTATION = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 5), JSON)},
    optional={
        "result": st.one_of(st.lists(st.dictionaries(st.sampled_from(["from_name", "value", "type"]), JSON)), JSON),
        "was_cancelled": JSON,
        "updated_at": JSON,
    },
)
WEBHOOK = st.fixed_dictionaries(
    {"action": st.one_of(
        st.sampled_from(["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "ANNOTATION_DELETED",
                         "START_TRAINING", "PROJECT_UPDATED"]), JSON)},
    optional={
        "project": st.one_of(
            PROJECTS, st.fixed_dictionaries({"id": st.integers(1, 3)}, optional={"label_config": JSON})
        ),
        "annotation": st.one_of(ANNOTATION, JSON),
        "annotations": st.one_of(st.lists(st.one_of(ANNOTATION, JSON), max_size=3), JSON),
        "task": st.one_of(st.fixed_dictionaries({"data": st.one_of(JSON, st.just({"text": "hi"}))}), JSON),
    },
)
SETUP = st.fixed_dictionaries({}, optional={"project": PROJECTS, "schema": st.one_of(st.just(CONFIG), XMLISH, JSON)})


@pytest.fixture(scope="module")
def client():
    with tempfile.TemporaryDirectory() as tmp:
        # training requests stay queued: a day of debounce means no job ever starts during these tests
        settings = Settings(model_dir=Path(tmp), label_config_path=EXAMPLES_CONFIG,
                            train_debounce_seconds=86400.0)
        yield create_app(Backend(MODEL_CLASS, settings)).test_client()


def _post(client, path: str, body: object) -> None:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500, (path, body, response.status)
    assert response.is_json


@FEW
@given(st.one_of(PREDICT, JSON))
def test_any_predict_body_gets_a_2xx_or_4xx(client, body):
    _post(client, "/predict", body)


@FEW
@given(st.one_of(WEBHOOK, JSON))
def test_any_webhook_body_gets_a_2xx_or_4xx(client, body):
    _post(client, "/webhook", body)


@settings(FEW, max_examples=60)
@given(st.one_of(SETUP, JSON))
def test_any_setup_body_gets_a_2xx_or_4xx(client, body):
    _post(client, "/setup", body)


def _answer(client, raw: bytes) -> tuple[str, object]:
    response = client.post("/predict", data=raw, content_type="application/json")
    return response.status, response.get_json()


@pytest.fixture(scope="module")
def shallow_client():
    """MAX_JSON_DEPTH=5: Label Studio's own /predict body fits; a little more nesting is refused."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(model_dir=Path(tmp), label_config_path=EXAMPLES_CONFIG, train_debounce_seconds=86400.0,
                            max_json_depth=5)
        yield create_app(Backend(MODEL_CLASS, settings)).test_client()


@FEW
@given(st.one_of(PREDICT, JSON), st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 1}]), st.booleans())
@example({"tasks": [{"data": {"text": "a", "unread": [[1]]}}]}, {}, True)  # too deep, in a field nobody reads
def test_typed_predict_reading_answers_as_a_full_parse_does(client, shallow_client, body, dumps_options, shallow):
    """The typed /predict reading (lsbackend.predict_body) gives the same status, reason and body as the general one."""
    app = shallow_client if shallow else client
    raw = json.dumps(body, **dumps_options).encode("utf-8", "surrogatepass")
    typed = _answer(app, raw)
    with mock.patch("lsbackend.server.read_predict_body", return_value=None):
        general = _answer(app, raw)
    assert typed == general, body
