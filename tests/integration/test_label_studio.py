"""A real Label Studio 1.23.2 connects to a baked backend, gets predictions, and trains it: every variant.

This is the user's path through the product: connect the backend to a project,
retrieve predictions, annotate some tasks, press Train, retrieve predictions
again. Every step goes through Label Studio's API; the backend is only asked
for its training status (a backend endpoint Label Studio does not know about).

The flow is the same for each variant (``text_classification``,
``image_classification``, ``ner``, ``object_detection``); a ``Scenario`` says what the tasks are,
how one is annotated and what counts as a correct prediction. Images come in
the two ways users bring them: ``http://`` URLs on a server of their own (here
one on loopback), and files uploaded to Label Studio, which the backend must
download from ``/data/upload/...`` with ``LABEL_STUDIO_API_KEY``.

Run with ``pytest -m integration tests/integration``. The first run installs
Label Studio into a cached venv (see ``label_studio.default_venv_dir``).
"""

from __future__ import annotations

import base64
import importlib.util
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from harness import FileServer, wait_until
from variants import MODEL_TYPES, captures

from .baked_backend import BakedBackend
from .label_studio import LabelStudioClient, choices_result, chosen_labels, labelled_spans, labels_result

pytestmark = [pytest.mark.slow, pytest.mark.integration]

UNTRAINED = "untrained"

# Each class has its own sentiment words (the filler, "experience", "product",
# "work", ..., occurs in both), so any bag-of-words model trained on the
# annotated texts separates the rest: every held-back text reuses sentiment
# words from the annotated texts of its class and none of the other's.
POSITIVE = [
    "wonderful delightful experience, truly excellent",
    "excellent service and a wonderful friendly staff",
    "delightful and lovely, I love it",
    "superb quality, excellent and lovely",
    "I love this wonderful superb product",
    "fantastic, delightful, simply superb",
    # held back from annotation:
    "lovely wonderful and excellent",
    "I love it, fantastic and superb",
    "delightful fantastic lovely work",
    "excellent, wonderful, love it",
]
NEGATIVE = [
    "terrible awful experience, truly horrible",
    "horrible service and a rude awful staff",
    "awful and disgusting, I hate it",
    "dreadful quality, horrible and disgusting",
    "I hate this terrible dreadful product",
    "rude, awful, simply dreadful",
    # held back from annotation:
    "disgusting terrible and horrible",
    "I hate it, rude and dreadful",
    "awful rude disgusting work",
    "horrible, terrible, hate it",
]
ANNOTATED_PER_CLASS = 6


@dataclass(frozen=True)
class Case:
    """One imported task and what the test knows about it.

    ``role``: ``early`` (annotated before the backend is connected, so only the
    backend's own API call can fetch it), ``later`` (annotated after, arrives by
    webhook) or ``held`` (never annotated; its prediction is checked).
    ``kind`` says how its data reached Label Studio (``text``, ``url``, ``upload``).
    """

    task_id: int
    truth: Any
    role: str
    kind: str


@dataclass(frozen=True)
class ControlConfig:
    """Where the baked config puts things: the names annotations must use."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def read_config(xml: str, control: str, obj: str, option: str) -> ControlConfig:
    """Read control/object names from the baked config instead of assuming them."""
    root = ET.fromstring(xml)
    found = root.find(f".//{control}")
    assert found is not None, f"no <{control}> in the baked label config:\n{xml}"
    target = next(el for el in root.iter(obj) if el.get("name") == found.get("toName"))
    return ControlConfig(
        from_name=found.attrib["name"],
        to_name=found.attrib["toName"],
        data_key=target.attrib["value"].lstrip("$"),
        labels=tuple(el.attrib["value"] for el in found.iter(option)),
    )


def load_baked_examples(baked_dir: Path) -> ModuleType:
    """The baked project's own ``tests/runtime/examples.py`` (the images its unit tests learn from), without sys.path."""
    spec = importlib.util.spec_from_file_location("baked_examples", baked_dir / "tests" / "runtime" / "examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Scenario:
    """What differs between variants; ``run_flow`` does the rest."""

    config: ControlConfig
    cases: list[Case]
    annotation: Callable[[Case], list[dict]]  # the result an annotator saves for the case's truth
    predicted: Callable[[dict], Any]  # what a stored prediction says, comparable to ``truth``
    min_correct: float  # share of held-back tasks that must be predicted exactly right


def roles(count: int, early: int, annotated: int) -> list[str]:
    return ["early"] * early + ["later"] * (annotated - early) + ["held"] * (count - annotated)


# --- text classification -------------------------------------------------------
def choices_scenario(config, cases: list[Case]) -> Scenario:
    """A classification scenario: annotate with the true choice, read back the first predicted one."""
    return Scenario(
        config=config,
        cases=cases,
        annotation=lambda case: choices_result(config.from_name, config.to_name, case.truth),
        predicted=lambda prediction: chosen_labels(prediction)[0] if chosen_labels(prediction) else None,
        min_correct=1.0,
    )


def text_scenario(client: LabelStudioClient, project_id: int, label_config: str, **_: Any) -> Scenario:
    config = read_config(label_config, "Choices", "Text", "Choice")
    assert {"Positive", "Negative"} <= set(config.labels), config
    per_class = [(POSITIVE, "Positive"), (NEGATIVE, "Negative")]
    cases: list[Case] = []
    for texts, label in per_class:
        tasks = client.import_tasks(project_id, [{config.data_key: text} for text in texts])
        for task, role in zip(tasks, roles(len(texts), 1, ANNOTATED_PER_CLASS), strict=True):
            cases.append(Case(task["id"], label, role, "text"))
    return choices_scenario(config, cases)


# --- image classification ------------------------------------------------------
IMAGES_PER_CLASS_AND_KIND = 6
ANNOTATED_IMAGES_PER_CLASS_AND_KIND = 4


def image_scenario(
    client: LabelStudioClient, project_id: int, label_config: str, baked_dir: Path, file_server: FileServer
) -> Scenario:
    """Reddish and bluish pictures (drawn by the baked ``examples.py``), half by URL and half uploaded.

    The default config's choices are Cat/Dog/Other; the colours stand in for the
    first two, which is all the model has to learn. Held-back pictures use shades
    the annotated ones do not.
    """
    config = read_config(label_config, "Choices", "Image", "Choice")
    assert len(config.labels) >= 2, config
    examples = load_baked_examples(baked_dir)
    holdout_shades = {
        "Red": [c for c, name in examples.HOLDOUT if name == "Red"],
        "Blue": [c for c, name in examples.HOLDOUT if name == "Blue"],
    }
    colours = {"Red": (examples.RED, config.labels[0]), "Blue": (examples.BLUE, config.labels[1])}
    url_truth: list[tuple[str, str, str]] = []  # (url, label, role) in import order
    uploads: list[tuple[str, bytes, str]] = []
    upload_truth: dict[str, tuple[str, str]] = {}
    seed = 0
    for colour, (annotated_shades, label) in colours.items():
        for kind in ("url", "upload"):
            task_roles = roles(
                IMAGES_PER_CLASS_AND_KIND, 1 if kind == "upload" else 0, ANNOTATED_IMAGES_PER_CLASS_AND_KIND
            )
            for index, role in enumerate(task_roles):
                offset = index + (0 if kind == "url" else ANNOTATED_IMAGES_PER_CLASS_AND_KIND)
                shades = holdout_shades[colour] if role == "held" else annotated_shades
                seed += 1
                png = examples.png_bytes(examples.colour_image(shades[offset % len(shades)], seed))
                name = f"{colour.lower()}-{kind}-{index}.png"
                if kind == "url":
                    (file_server.root / name).write_bytes(png)
                    url_truth.append((f"{file_server.url}/{name}", label, role))
                else:
                    uploads.append((name, png, "image/png"))
                    upload_truth[name] = (label, role)
    imported = client.import_tasks(project_id, [{config.data_key: url} for url, _, _ in url_truth])
    cases: list[Case] = []
    for task, (url, label, role) in zip(imported, url_truth, strict=True):
        assert task["data"][config.data_key] == url, f"Label Studio changed an image URL on import: {task['data']}"
        cases.append(Case(task["id"], label, role, "url"))
    uploaded = client.upload_files(project_id, uploads)
    for task in uploaded:
        path = task["data"].get(config.data_key)
        assert isinstance(path, str) and path.startswith(f"/data/upload/{project_id}/"), (
            f"an uploaded file's task does not point at Label Studio's upload folder: {task['data']}"
        )
        name = next((n for n in upload_truth if path.endswith((f"-{n}", f"/{n}"))), None)
        assert name is not None, f"cannot tell which upload became {path}: {sorted(upload_truth)}"
        label, role = upload_truth.pop(name)
        cases.append(Case(task["id"], label, role, "upload"))
    assert not upload_truth, f"uploads without a task: {sorted(upload_truth)}"
    return choices_scenario(config, cases)


# --- named entities --------------------------------------------------------------
PERSONS = [
    "Alice Smith",
    "Bob Jones",
    "Carla Diaz",
    "David Brown",
    "Eva Green",
    "Frank Lee",
    "Hannah Kim",
    "Ivan Petrov",
]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Wayne Enterprises"]
CITIES = ["Paris", "Berlin", "Madrid", "London", "Oslo", "Vienna", "Rome", "Lisbon"]
TEMPLATES = [
    "{PER} works at {ORG} in {LOC}.",
    "{PER} lives in {LOC}.",
    "Yesterday {PER} flew to {LOC} for {ORG}.",
    "The office of {ORG} in {LOC} is closed.",
    "{PER} joined {ORG} last year.",
    "According to {PER}, the meeting moved to {LOC}.",
]
NER_ANNOTATED = 24
NER_HELD_BACK = 10


def entity_sentences(count: int, start: int = 0) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """``count`` templated sentences and their ``(start, end, label)`` spans.

    Each placeholder takes the next name of its kind in turn, beginning at
    ``start``, so the annotated sentences use every name, and held-back ones
    (another ``start``) pair the same names differently; ``ner_scenario`` checks
    both.
    """
    names = {"PER": PERSONS, "ORG": ORGS, "LOC": CITIES}
    used = dict.fromkeys(names, start)
    sentences = []
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        text, spans, at = "", [], 0
        while "{" in template[at:]:
            open_at = template.index("{", at)
            close_at = template.index("}", open_at)
            text += template[at:open_at]
            label = template[open_at + 1 : close_at]
            name = names[label][used[label] % len(names[label])]
            used[label] += 1
            spans.append((len(text), len(text) + len(name), label))
            text += name
            at = close_at + 1
        sentences.append((text + template[at:], spans))
    return sentences


def ner_scenario(client: LabelStudioClient, project_id: int, label_config: str, **_: Any) -> Scenario:
    config = read_config(label_config, "Labels", "Text", "Label")
    assert {"PER", "ORG", "LOC"} <= set(config.labels), config
    annotated = entity_sentences(NER_ANNOTATED)
    held_back = entity_sentences(NER_HELD_BACK, start=4)
    repeated = {text for text, _ in held_back} & {text for text, _ in annotated}
    assert not repeated, f"held-back sentences that are also annotated: {repeated}"

    def entities(sentences: list[tuple[str, list[tuple[int, int, str]]]]) -> set[tuple[str, str]]:
        return {(text[start:end], label) for text, spans in sentences for start, end, label in spans}

    assert entities(annotated) == entities(held_back) | entities(annotated), "held-back names never annotated"
    sentences = annotated + held_back
    tasks = client.import_tasks(project_id, [{config.data_key: text} for text, _ in sentences])
    cases, texts = [], {}
    for task, role, (text, spans) in zip(tasks, roles(len(sentences), 2, NER_ANNOTATED), sentences, strict=True):
        truth = tuple(sorted((start, end, text[start:end], label) for start, end, label in spans))
        cases.append(Case(task["id"], truth, role, "text"))
        texts[task["id"]] = text
    return Scenario(
        config=config,
        cases=cases,
        annotation=lambda case: labels_result(
            config.from_name, config.to_name, texts[case.task_id], [(s, e, label) for s, e, _, label in case.truth]
        ),
        predicted=lambda prediction: tuple(labelled_spans(prediction)),
        min_correct=0.9,
    )


# --- object detection ------------------------------------------------------------
DETECTION_IMAGES_PER_KIND = 16
DETECTION_ANNOTATED_PER_KIND = 12


def check_box_items(prediction: dict) -> None:
    """A stored detection prediction has Label Studio's rectangle shape: percent box, image size, labels."""
    for item in prediction["result"]:
        assert item["type"] == "rectanglelabels" and item["image_rotation"] == 0, item
        assert (item["original_width"], item["original_height"]) == (96, 64), item
        value = item["value"]
        assert 0 <= value["x"] < value["x"] + value["width"] <= 100 + 1e-9, item
        assert 0 <= value["y"] < value["y"] + value["height"] <= 100 + 1e-9, item
        assert len(value["rectanglelabels"]) == 1 and 0 < item["score"] <= 1, item
    assert 0 <= prediction["score"] <= 1, prediction


def detection_scenario(
    client: LabelStudioClient, project_id: int, label_config: str, baked_dir: Path, file_server: FileServer
) -> Scenario:
    """Squares and circles on plain backgrounds (drawn by the baked ``examples.py``), by URL and uploaded;
    annotated with boxes in percent, and read back as the ``(label, quadrant)`` of each predicted box."""
    config = read_config(label_config, "RectangleLabels", "Image", "Label")
    examples = load_baked_examples(baked_dir)
    assert set(examples.LABELS) <= set(config.labels), config
    boxes: dict[str, list[dict]] = {}
    truth: dict[str, tuple] = {}
    by_url, uploads = [], []
    for kind in ("url", "upload"):
        task_roles = roles(DETECTION_IMAGES_PER_KIND, 2 if kind == "upload" else 0, DETECTION_ANNOTATED_PER_KIND)
        for index, role in enumerate(task_roles):
            seed = 3000 + index + (1000 if kind == "upload" else 0)
            image, objects = examples.scene(seed)
            name = f"scene-{kind}-{index}.png"
            boxes[name] = [examples.box_item(corners, label, from_name=config.from_name, to_name=config.to_name,
                                             item_id=f"b{i}") for i, (label, _, corners) in enumerate(objects)]
            truth[name] = (examples.expected(seed), role)
            png = examples.png_bytes(image)
            if kind == "url":
                (file_server.root / name).write_bytes(png)
                by_url.append(name)
            else:
                uploads.append((name, png, "image/png"))
    cases: list[Case] = []
    results: dict[int, list[dict]] = {}
    imported = client.import_tasks(project_id, [{config.data_key: f"{file_server.url}/{n}"} for n in by_url])
    for task, name in zip(imported, by_url, strict=True):
        cases.append(Case(task["id"], truth[name][0], truth[name][1], "url"))
        results[task["id"]] = boxes[name]
    for task in client.upload_files(project_id, uploads):
        path = task["data"].get(config.data_key)
        name = next(n for n, _, _ in uploads if isinstance(path, str) and path.endswith((f"-{n}", f"/{n}")))
        cases.append(Case(task["id"], truth[name][0], truth[name][1], "upload"))
        results[task["id"]] = boxes[name]
    return Scenario(
        config=config,
        cases=cases,
        annotation=lambda case: results[case.task_id],
        predicted=lambda prediction: (check_box_items(prediction), examples.predicted_label(prediction))[1],
        min_correct=0.75,
    )


# By the kind of captured requests a variant answers (its manifest's "captures"), so a new variant
# that answers a known kind (a copy of the text model, say) is driven through Label Studio too.
SCENARIOS = {"text": text_scenario, "image": image_scenario, "ner": ner_scenario, "detection": detection_scenario}


def predictions_by_task(client: LabelStudioClient, project_id: int) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = defaultdict(list)
    for prediction in client.list_predictions(project_id):
        grouped[prediction["task"]].append(prediction)
    return grouped


@pytest.mark.parametrize(
    ("model_type", "backend_api_key", "basic_auth"),
    [
        ("text_classification", "personal_access_token", "no_auth"),
        ("text_classification", "legacy_token", "basic_auth"),
        ("image_classification", "personal_access_token", "no_auth"),
        ("image_classification", "legacy_token", "no_auth"),
        ("ner", "personal_access_token", "basic_auth"),
    ]
    # every other variant folder runs once, with the default access
    + [(t, "personal_access_token", "no_auth") for t in MODEL_TYPES if t not in ("text_classification",
                                                                                "image_classification", "ner")],
    indirect=True,
)
def test_label_studio_predicts_trains_and_predicts_again(
    ls_client: LabelStudioClient,
    backend: BakedBackend,
    baked_dir: Path,
    model_type: str,
    file_server: FileServer,
    basic_auth: tuple[str, str] | None,
) -> None:
    label_config = (baked_dir / "label_config.xml").read_text()
    project = ls_client.create_project(f"LS Integration {model_type}", label_config)
    project_id = project["id"]
    scenario = SCENARIOS[captures(model_type)](ls_client, project_id, label_config, baked_dir=baked_dir, file_server=file_server)
    cases = {case.task_id: case for case in scenario.cases}
    early = [c for c in scenario.cases if c.role == "early"]
    later = [c for c in scenario.cases if c.role == "later"]
    held_back = [c for c in scenario.cases if c.role == "held"]
    assert early and later and held_back, scenario.cases

    def annotate(to_annotate: list[Case]) -> None:
        for case in to_annotate:
            ls_client.create_annotation(case.task_id, scenario.annotation(case))

    # Annotations made before the backend is connected never reach it by webhook
    # (there is none yet): only its own Label Studio API call can fetch them.
    annotate(early)

    # Connect: Label Studio checks /health and /setup, and adds a webhook to <backend>/webhook
    # (which its SSRF protection, on and narrowed, must let through).
    ml_backend = ls_client.connect_ml_backend(project_id, backend.url, "baked backend", basic_auth)
    assert ml_backend["state"] == "CO", f"Label Studio does not see the backend as connected: {ml_backend}"
    assert ml_backend["model_version"] == UNTRAINED, ml_backend
    webhooks = ls_client.list_webhooks(project_id)
    assert any(hook["url"] == f"{backend.url}/webhook" and hook["is_active"] for hook in webhooks), webhooks
    if basic_auth:
        # Label Studio sends the webhook without the Connect dialog's credentials: the backend adds
        # its Authorization header to that webhook itself, through Label Studio's API, after /setup.
        expected = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()

        def authorized() -> list[dict] | None:
            hooks = [h for h in ls_client.list_webhooks(project_id) if h["url"] == f"{backend.url}/webhook"]
            return hooks if all((h.get("headers") or {}).get("Authorization") == expected for h in hooks) else None

        wait_until(authorized, timeout=60, interval=0.5, what="the backend to authorize its webhook",
                   logs=[backend.process])
    assert backend.training_status(project_id)["state"] == "idle"
    # Nothing trained yet: an empty list (a 404 would make Label Studio say "Upgrade your ML backend").
    assert ls_client.ml_backend_versions(ml_backend["id"]) == {"versions": []}

    # Before training: one empty prediction per task, versioned "untrained".
    ls_client.retrieve_predictions(project_id, list(cases))
    before = predictions_by_task(ls_client, project_id)
    assert sorted(before) == sorted(cases), f"tasks without a stored prediction: {set(cases) - set(before)}"
    for task_id, stored in before.items():
        assert len(stored) == 1, f"task {task_id} has {len(stored)} predictions: {stored}"
        assert stored[0]["model_version"] == UNTRAINED, stored[0]
        assert stored[0]["result"] == [], stored[0]

    # Annotate through Label Studio; each save fires ANNOTATION_CREATED at <backend>/webhook
    # (synchronously: Label Studio without Redis delivers webhooks inside the request).
    annotate(later)
    recorded = backend.training_status(project_id).get("recorded_annotations")
    assert recorded == len(later), f"backend recorded {recorded} annotations from webhooks, expected {len(later)}"

    # Train: Label Studio posts START_TRAINING to /webhook; the backend trains in the background.
    ls_client.start_training(ml_backend["id"])
    status = backend.wait_for_training(project_id, logs=[backend.process])
    assert status["state"] == "succeeded", f"training did not succeed: {status}"
    new_version = status["model_version"]
    assert new_version and new_version != UNTRAINED, status
    trained_on = len(early) + len(later)
    assert status.get("annotations") == trained_on, (
        f"trained on {status.get('annotations')} annotations, expected {trained_on} "
        f"({len(later)} by webhook + {len(early)} fetched with LABEL_STUDIO_API_KEY): {status}"
    )

    # Label Studio learns the new version from /setup and re-predicts every task.
    ls_client.retrieve_predictions(project_id, list(cases))
    assert ls_client.get_ml_backend(ml_backend["id"])["model_version"] == new_version
    # Its model-version list comes from the backend's GET /versions: the kept versions, newest first.
    assert ls_client.ml_backend_versions(ml_backend["id"]) == {"versions": [new_version]}
    after = predictions_by_task(ls_client, project_id)
    versions = sorted({p["model_version"] for stored in after.values() for p in stored})
    assert versions == sorted({UNTRAINED, new_version}), f"unexpected model versions (media errors?): {versions}"
    fresh = {task_id: [p for p in stored if p["model_version"] == new_version] for task_id, stored in after.items()}
    missing = [task_id for task_id in cases if len(fresh.get(task_id, [])) != 1]
    assert not missing, f"tasks without exactly one {new_version} prediction: {[after.get(t) for t in missing]}"
    with_error = [fresh[t][0] for t in cases if fresh[t][0].get("error") or not isinstance(fresh[t][0]["result"], list)]
    assert not with_error, f"predictions carrying an error: {with_error}"
    wrong = {
        case.task_id: (case.kind, case.truth, scenario.predicted(fresh[case.task_id][0]))
        for case in held_back
        if scenario.predicted(fresh[case.task_id][0]) != case.truth
    }
    right = len(held_back) - len(wrong)
    assert right >= scenario.min_correct * len(held_back), (
        f"{right} of {len(held_back)} held-back tasks predicted right, need {scenario.min_correct:.0%}; "
        f"wrong (task: (kind, truth, predicted)): {wrong}"
    )
    kinds = sorted({case.kind for case in held_back})
    assert kinds == sorted({case.kind for case in scenario.cases}), f"held-back tasks miss a kind: {kinds}"
