"""``LabelStudioMLBase``: the class ``model.py`` derives from.

A model object is built once per project and process, loaded with the last
trained state, and then serves many ``predict`` calls (the "load once,
predict many" shape). Training builds a fresh object, calls ``fit`` and the
runtime swaps it in only when ``fit`` succeeded and its output was saved.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .box_units import LabeledBox, read_boxes, to_percent
from .interaction import Interaction, TaskCache, parse_interaction
from .label_config import ConfigError, ControlTag, LabelConfig, ObjectTag, check_fit, parse_label_config
from .media import MediaError, MediaResolver, decode_text, failed_prediction, resolver_for
from .settings import Settings
from .spans import align_span

if TYPE_CHECKING:
    from .images import UprightImage

log = logging.getLogger(__name__)
INITIAL_VERSION = "untrained"
#: With ``<Choices choice="multiple">``, a label is predicted when its own score reaches this
#: (``extra_params["score_threshold"]`` replaces it).
MULTI_LABEL_THRESHOLD = 0.5


class TaskDataError(ValueError):
    """A task lacks the data the labeling config says the model reads."""

    def __init__(self, task: dict, key: str, problem: str = "has no data field") -> None:
        self.task_id = task.get("id") if isinstance(task, dict) else None
        self.key = key
        self.reason = f"Task {self.task_id} {problem} {key!r}"
        super().__init__(self.reason)


class LabelStudioMLBase:
    """Base for a Label Studio ML backend model.

    Subclasses set ``model_type`` (so the labeling config is checked against
    it) and implement ``predict`` and ``fit``. Available to them:

    - ``label_config``: the project's labeling config XML;
    - ``parsed_label_config``: Label Studio's shape, control name -> type,
      to_name, inputs, labels;
    - ``control`` / ``object_tag`` / ``labels``: the control tag the model fills,
      the object tag it reads, and that control's labels;
    - ``train_output``: what the last successful ``fit`` returned (persisted);
    - ``model_version``: changes on every successful training;
    - ``extra_params``: the "Extra params" JSON object of Label Studio's Connect
      dialog, kept per project (``{}`` when none were given);
    - ``project_id``;
    - ``settings``: the backend's ``Settings`` (Label Studio URL and key, media
      limits, ``max_text_chars``, ...); read settings here, not from the environment.
    """

    model_type: ClassVar[str | None] = None
    #: Entries ``task_cache`` keeps (decoded images, features, predictions of the tasks being annotated).
    task_cache_size: ClassVar[int] = 16

    def __init__(
        self,
        label_config: str,
        project_id: str = "default",
        train_output: dict | None = None,
        model_version: str = INITIAL_VERSION,
        extra_params: dict | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.project_id = project_id
        # defaults, not the environment: only entry points read it (a model built by hand stays offline)
        self.settings = settings if settings is not None else Settings()
        self.label_config = label_config
        self.config: LabelConfig = parse_label_config(label_config)
        self.parsed_label_config = self.config.as_dict()
        self.control, self.object_tag = self.check_config(self.config)
        self.train_output: dict = train_output or {}
        self.model_version = model_version
        self.extra_params: dict = dict(extra_params or {})
        self.skipped: list[str] = []  # what ``fit`` left out, and why (see ``skip``)
        aliases = dict(self.control.aliases)
        self._stored = {label: aliases.get(label, label) for label in self.control.labels}
        self._label_of = {stored: label for label, stored in self._stored.items()}
        self._label_of.update({label: label for label in self.control.labels})  # a value stored before its alias
        self._class_labels = {**{label.lower(): label for label in self.control.labels},
                              **{label: label for label in self.control.labels}, **dict(self.control.predicted_values)}
        self.setup()

    # --- the parts a model overrides -------------------------------------
    @classmethod
    def check_config(cls, config: LabelConfig) -> tuple[ControlTag, ObjectTag]:
        """Return the (control, object) pair this model works on, or raise ``ConfigError``.

        The default checks the config against ``model_type``; override it for a
        model that needs another shape.
        """
        if cls.model_type is None:
            raise ConfigError(f"{cls.__name__} sets no model_type; set it or override check_config")
        return check_fit(config, cls.model_type)

    @classmethod
    def check_extra_params(cls, params: dict) -> None:
        """Refuse extra params this model cannot use, at ``/setup``, with a ``ConfigError`` naming the fix.

        The default checks ``score_threshold``; override (and call ``super()``) to check your own.
        """
        threshold = params.get("score_threshold")
        if threshold is not None and not (
            isinstance(threshold, int | float) and not isinstance(threshold, bool) and 0 <= threshold <= 1
        ):
            raise ConfigError(
                "Extra params: score_threshold must be a number from 0 to 1",
                f"got {threshold!r}; set it in Label Studio's Connect Model dialog, e.g. {{\"score_threshold\": 0.6}}",
            )

    @property
    def score_threshold(self) -> float:
        """``extra_params["score_threshold"]``: predictions scoring less are left out (unset: 0, all kept)."""
        return self.score_threshold_or(0.0)

    def score_threshold_or(self, default: float) -> float:
        """The project's ``score_threshold`` extra param, or ``default`` where the project sets none.

        The one way every helper reads it: 0 is a setting (keep everything), only an absent or null
        param falls back. ``default`` is the model's own cut where it needs one: 0.5 for one-vs-rest
        labels, a detector's default score.
        """
        value = self.extra_params.get("score_threshold")
        return default if value is None else float(value)

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        """Turn the file ``MODEL_URI`` names into a ``train_output`` to predict with before any training.

        Runs once per process, in a background thread, with the fetched and checked copy of
        the file (its suffix kept: ``.joblib``, ``.onnx``, ...). Override it in ``model.py``;
        the returned dict reaches ``setup`` as ``self.train_output``.
        """
        raise NotImplementedError(f"{cls.__name__} does not load pretrained models: implement "
                                  "load_pretrained in model.py, or unset MODEL_URI")

    def setup(self) -> None:
        """Prepare per-object state (runs once when the object is built)."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        """Return one prediction per task, in task order."""
        raise NotImplementedError

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        """Learn from annotations; the returned dict becomes ``train_output``."""
        raise NotImplementedError

    # --- helpers ----------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """The labels of the control this model fills, in config order."""
        return list(dict.fromkeys(self.control.labels))

    def task_value(self, task: dict) -> Any:
        """The task data the object tag reads, or ``TaskDataError`` naming the field."""
        key = self.object_tag.data_key or self.object_tag.name
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or key not in data:
            raise TaskDataError(task if isinstance(task, dict) else {}, key)
        return data[key]

    def task_references(self, tasks: list[dict]) -> list[str]:
        """Each task's media reference (URL, path, URI), or ``TaskDataError`` naming the field (the request is wrong).

        Checks the fields and downloads nothing: an untrained model still refuses a task without one.
        """
        kind = self.object_tag.type.lower()
        references = []
        for task in tasks:
            reference = self.task_value(task)
            if not isinstance(reference, str):
                raise TaskDataError(task, self.object_tag.data_key or "", f"has no {kind} URL or path in")
            references.append(reference)
        return references

    def task_images(self, tasks: list[dict], max_side: int | None = None, *, per_task_errors: bool = False,
                    keep: bool = False) -> list[UprightImage | MediaError]:
        """Each task's image as Label Studio shows it (EXIF orientation applied, no larger than ``max_side``),
        or the ``MediaError`` saying why not: one broken image is that task's error only.

        Decoding is guarded in ``lsbackend/images.py``: the pixel limit (MEDIA_MAX_MEGAPIXELS) is read
        from the header before decoding, Pillow's own limit follows it, and bytes that are not an image
        are an error, not a crash. A task without a reference raises ``TaskDataError``, or with
        ``per_task_errors`` (training) is that task's ``MediaError``. ``keep=True`` (an interactive call)
        keeps decoded images in ``task_cache`` for the annotator's next click. Needs Pillow.
        """
        from .images import load_upright  # images.py and Pillow ship with the image variants only

        # in training, a task without a reference fails when fetched: that annotation is skipped
        references = [_value_or_none(self, task) for task in tasks] if per_task_errors else self.task_references(tasks)
        pairs = [(reference, task.get("id") if isinstance(task, dict) else None)
                 for reference, task in zip(references, tasks, strict=True)]
        return load_upright(self.media_resolver, pairs, max_side, self.task_cache if keep else None)

    # --- interactive pre-annotation (lsbackend/interaction.py) ---------------
    def interaction(self, context: dict | None) -> Interaction | None:
        """What the annotator just did, from ``predict``'s ``context``, or None when there is none.

        None, no ``result`` and an empty ``result`` (what Label Studio sends on opening a task) all
        give None: predict as usual. Otherwise the regions, each with ``kind`` ("point", "box",
        "span", "prompt", "shape"), ``label``, percent and pixel coordinates (``pixel_box()``),
        ``positive`` (False for an alt-click keypoint), span ``start``/``end``/``text``, and the
        prompt text (``interaction.prompt``). A malformed context raises ``InteractionError`` (422).
        Label Studio sends one task and shows only the first prediction's items, as suggestions.
        """
        return parse_interaction(context)

    @functools.cached_property
    def task_cache(self) -> TaskCache:
        """A bounded LRU (``task_cache_size``) for what interactive calls recompute per click: key it by
        task id and data reference; a new model version builds a new object, so a new cache."""
        return TaskCache(self.task_cache_size)

    # --- media: what a task's object tag points at (lsbackend/media.py) -----
    @property
    def media_resolver(self) -> MediaResolver:
        """The backend's one resolver for these settings (shared download cache, limits, Label Studio key)."""
        return resolver_for(self.settings)

    def media(self, task: dict) -> bytes:
        """The bytes of what this task's object tag points at (an image, audio, a PDF, a text file ...).

        The reference is the task field the object tag reads (``<Image value="$image"/>`` reads
        ``data["image"]``); it may be an http(s) URL, a Label Studio path (fetched with
        ``LABEL_STUDIO_API_KEY``, legacy or personal access token), a cloud URI (``s3://``, ``gs://``,
        ``azure-blob://``, through Label Studio's resolve endpoint for this task), a ``data:`` URI, or a
        file under ``LOCAL_FILES_ROOT``. Downloads are SSRF-guarded and limited by ``MEDIA_MAX_MB`` and
        ``MEDIA_TIMEOUT_SECONDS``. Raises ``TaskDataError`` when the task lacks the field and
        ``MediaError`` (its message names the setting to fix) when it cannot be loaded: catch it per
        task (``predictions_for`` does), or load many tasks at once with ``media_many``.
        """
        return self.media_resolver.fetch(self.task_value(task), task.get("id"))

    def media_many(self, tasks: list[dict]) -> list[bytes | MediaError]:
        """``media`` for each task, ``MEDIA_FETCH_THREADS`` at a time; a failure is that task's ``MediaError``."""
        references = [(self.task_value(task), task.get("id")) for task in tasks]
        return self.media_resolver.fetch_many(references)

    def local_path(self, url: str, task_id: object = None) -> Path:
        """A file on this machine with what ``url`` refers to, for libraries that want a path.

        The upstream SDK's ``get_local_path(url, task_id=...)`` idea, with ``media``'s guarantees:
        ``url`` is any reference ``media`` takes; ``task_id`` is needed for cloud URIs (Label Studio
        resolves them per task). A file under ``LOCAL_FILES_ROOT`` is returned where it is; anything
        else is downloaded once into a private cache directory (bounded by ``MEDIA_CACHE_MB``) and keeps
        its suffix. Raises ``MediaError`` naming the fix.
        """
        return self.media_resolver.local_path(url, task_id)

    def task_texts(self, tasks: list[dict], per_task_errors: bool = False, fetch: bool = True) -> list[Any]:
        """Each task's text: the field itself, or with ``<Text valueType="url">`` the UTF-8 text it links to.

        Links are fetched like ``media`` (in parallel, cached); one that cannot be fetched or is not
        UTF-8 is that task's ``MediaError``. A missing or non-string field raises ``TaskDataError``
        (the request is wrong), or with ``per_task_errors`` stands in that task's place (training
        skips such annotations). ``fetch=False`` checks the fields and downloads nothing.
        """
        key = self.object_tag.data_key or ""
        values: list[Any] = []
        for task in tasks:
            try:
                value = self.task_value(task)
                if not isinstance(value, str):
                    raise TaskDataError(task, key, "has non-text data in")
            except TaskDataError as exc:
                if not per_task_errors:
                    raise
                value = exc
            values.append(value)
        if not fetch or self.object_tag.value_type.strip().lower() != "url":
            return values
        wanted = [i for i, value in enumerate(values) if isinstance(value, str)]
        fetched = self.media_resolver.fetch_many((values[i], tasks[i].get("id")) for i in wanted)
        for i, item in zip(wanted, fetched, strict=True):
            try:
                values[i] = item if isinstance(item, MediaError) else decode_text(item, values[i])
            except MediaError as exc:
                values[i] = exc
        return values

    def annotation_texts(self, annotations: list[dict], max_chars: int | None = None) -> list[str | None]:
        """Each annotation's task text for training (``task_texts``), or None where it cannot be used.

        A missing or non-text field, a link that cannot be fetched, or a text over ``max_chars`` is
        left out with the reason (``skip``), so one odd task costs its own annotation only.
        """
        tasks: list[Any] = [a.get("task") for a in annotations]  # a missing task is that annotation's error
        texts = self.task_texts(tasks, per_task_errors=True)
        usable: list[str | None] = []
        for annotation, text in zip(annotations, texts, strict=True):
            if isinstance(text, Exception):
                self.skip(annotation, str(text))
                text = None
            elif max_chars is not None and len(text) > max_chars:
                log.warning("training skips annotation %s: its text is %d characters, over the %d limit "
                            "(MAX_TEXT_CHARS)", annotation.get("id"), len(text), max_chars)
                self.skip(annotation, f"its text is {len(text)} characters, over MAX_TEXT_CHARS")
                text = None
            usable.append(text)
        return usable

    def annotation_images(self, annotations: list[dict],
                          max_side: int | None = None) -> list[UprightImage | MediaError]:
        """Each annotation's task image for training (``task_images``), or the ``MediaError`` saying why not.

        An image that cannot be loaded leaves its annotation out (``skip``, and a logged warning), so one
        bad image costs its own annotation, never the training.
        """
        tasks: list[Any] = [a.get("task") for a in annotations]  # a missing task is that annotation's error
        pictures = self.task_images(tasks, max_side, per_task_errors=True)
        for annotation, picture in zip(annotations, pictures, strict=True):
            if isinstance(picture, MediaError):
                task = annotation.get("task")
                log.warning("training skips task %s: %s", task.get("id") if isinstance(task, dict) else None, picture)
                self.skip(annotation, f"image not loaded: {picture}")
        return pictures

    def failed_task(self, task: dict, reason: str | Exception) -> dict:
        """The prediction of a task the model cannot predict: no regions, the reason in ``error``, logged.

        The one way to fail a task and keep the others: Label Studio shows the reason. A ``MediaError``
        (media not loaded) also marks the version ``+media-error`` (``media.failed_prediction``), so the
        task is predicted again once the cause is fixed.
        """
        if isinstance(reason, MediaError):
            return failed_prediction(task, reason, self.model_version)
        log.warning("task %s: no prediction: %s", task.get("id") if isinstance(task, dict) else None, reason)
        return {**self.prediction([]), "error": str(reason)}

    def predictions_for(self, tasks: list[dict], loaded: list[Any],
                        predict: Callable[[list[Any]], list[dict]]) -> list[dict]:
        """One prediction per task from inputs loaded per task, where an exception marks one that failed.

        ``predict`` gets the loaded inputs only, in task order, and returns one prediction each; a
        failed task (a ``MediaError``, or any exception the model put in its place, e.g. a text over a
        limit) gets ``failed_task``'s prediction, so one broken link never costs the other tasks theirs.
        """
        predictions: list[dict | None] = [
            self.failed_task(task, item) if isinstance(item, Exception) else None
            for task, item in zip(tasks, loaded, strict=True)
        ]
        good = [i for i, item in enumerate(loaded) if not isinstance(item, Exception)]
        if good:
            for i, prediction in zip(good, predict([loaded[i] for i in good]), strict=True):
                predictions[i] = prediction
        return predictions  # type: ignore[return-value]

    def annotation_values(self, annotation: dict) -> list[dict]:
        """The ``value`` dicts of an annotation's result items for this model's control.

        Malformed items are skipped, so one bad annotation cannot break every later training.
        """
        items = annotation.get("result")
        return [
            item["value"]
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and item.get("from_name") == self.control.name
            and isinstance(item.get("value"), dict)
        ]

    def annotation_labels(self, annotation: dict) -> list[str]:
        """The labels of this config an annotation gave through this model's control (aliases mapped back)."""
        found: list[str] = []
        for value in self.annotation_values(annotation):
            chosen = value.get("choices") or value.get("labels")
            if isinstance(chosen, list):
                found.extend(label for c in chosen if (label := self.label_of(c)) is not None)
        return found

    def annotation_spans(self, annotation: dict, text: str) -> list[tuple[int, int, str]]:
        """The ``(start, end, label)`` spans an annotation marked in ``text`` with this model's control.

        Labels are mapped back from aliases; a span whose offsets disagree with its quoted ``text`` moves
        to that text's nearest occurrence (``spans.align_span``). A span that cannot be used (no label of
        the config, offsets that are not integers, a ``text`` that is not a string, a place not in the
        text) is left out, saying why (``skip``).
        """
        spans = []
        for value in self.annotation_values(annotation):
            given = value.get("labels")
            labels = [label for g in (given if isinstance(given, list) else []) if (label := self.label_of(g))]
            start, end, quoted = value.get("start"), value.get("end"), value.get("text")
            if not labels:
                self.skip(annotation, f"a span with no label of <{self.control.type} name={self.control.name!r}>: "
                                      f"{given!r:.60}")
            elif (not (isinstance(start, int) and isinstance(end, int))
                  or isinstance(start, bool) or isinstance(end, bool)):
                self.skip(annotation, f"a span with offsets {start!r:.20}, {end!r:.20}; they must be integers")
            elif quoted is not None and not isinstance(quoted, str):
                self.skip(annotation, f"a span whose text is a {type(quoted).__name__}, not a string")
            elif (placed := align_span(text, start, end, quoted)) is None:
                self.skip(annotation, f"a span at {start}..{end} that is not in the task's text")
            else:
                spans.append((*placed, labels[0]))
        return spans

    def labeled_annotations(self, annotations: list[dict]) -> list[tuple[dict, list[str]]]:
        """Each annotation with the labels it gives through this model's control (``annotation_labels``);
        one giving none is left out, saying why (``skip``)."""
        labeled = []
        for annotation in annotations:
            found = self.annotation_labels(annotation)
            if found:
                labeled.append((annotation, found))
            else:
                kind = self.control.type
                self.skip(annotation, f"chooses nothing of <{kind} name={self.control.name!r}>")
        return labeled

    def annotation_boxes(self, annotation: dict, width: float, height: float) -> list[LabeledBox]:
        """The usable boxes an annotation drew with this model's control, in pixels of the image as displayed
        (``width`` x ``height``); a box that cannot be used (rotated, no label of the config, outside the
        image) is left out saying why (``skip``), as is an annotation that draws none."""
        boxes, problems = read_boxes(annotation.get("result"), self.control.name, self.label_of, width, height)
        for problem in problems:
            self.skip(annotation, problem)
        if not boxes and not problems:
            self.skip(annotation, f"draws no box with <{self.control.type} name={self.control.name!r}>")
        return boxes

    def label_of(self, stored: object) -> str | None:
        """The config label a result names: Label Studio stores a label's ``alias`` when it has one."""
        return self._label_of.get(stored) if isinstance(stored, str) else None

    def label_for_class(self, name: object) -> str | None:
        """The config label a pretrained model's class name maps to, or None to leave it out.

        ``<Label value="Car" predicted_values="car,truck"/>`` maps the model's ``car`` and ``truck`` to
        ``Car``; without it a class maps to the label of the same name (exactly, else ignoring case).
        """
        if not isinstance(name, str):
            return None
        return self._class_labels.get(name) or self._class_labels.get(name.lower())

    def skip(self, annotation: dict, reason: str) -> None:
        """Leave an annotation (or one of its result items) out of training, saying why.

        The runtime counts these and shows the first few in the training status, so one odd
        annotation costs only itself, never the whole training.
        """
        task = annotation.get("task") if isinstance(annotation, dict) else None
        task_id = task.get("id") if isinstance(task, dict) else None
        self.skipped.append(f"annotation {annotation.get('id')} (task {task_id}): {reason}"[:300])

    def result_item(self, value: dict, score: float | None = None) -> dict:
        """A result item for this model's control; names and type come from the config."""
        item: dict[str, object] = {
            "from_name": self.control.name,
            "to_name": self.object_tag.name,
            "type": self.control.type.lower(),
            "value": value,
        }
        if score is not None:
            item["score"] = float(score)
        return item

    @property
    def multi_label(self) -> bool:
        """Whether the control lets annotators pick several labels (``<Choices choice="multiple">``)."""
        return str(self.control.attrs.get("choice", "")).lower() == "multiple"

    def multi_label_prediction(self, classes: list[str], scores: list[float]) -> dict:
        """One task's prediction picking every label whose own score reaches the threshold.

        ``scores[i]`` is the model's independent probability of ``classes[i]`` (one-vs-rest).
        The result item lists the labels in config order; its score is the lowest of
        theirs. With no label above the threshold the result is empty and the score is the
        highest one seen, so a user can tell "unsure" from "untrained".
        """
        threshold = self.score_threshold_or(MULTI_LABEL_THRESHOLD)
        labels = self.labels
        by_label = {label: score for label, score in zip(classes, scores, strict=True) if label in labels}
        chosen = [label for label in labels if by_label.get(label, -1.0) >= threshold]
        if not chosen:
            return self.prediction([], max(by_label.values(), default=0.0))
        score = min(by_label[label] for label in chosen)
        stored = [self._stored.get(label, label) for label in chosen]  # aliases, as single-label stores them
        return self.prediction([self.result_item({"choices": stored}, score)], score)

    def known_labels(self, classes: Sequence[object]) -> list[str]:
        """The model's classes that are labels of the config now (it may have changed since training)."""
        labels = set(self.labels)
        return [str(c) for c in classes if c in labels]

    def choice_predictions(self, probabilities: Any, classes: Sequence[object]) -> list[dict]:
        """One prediction per row of class probabilities: ``probabilities[i][j]`` for ``classes[j]``,
        e.g. what a scikit-learn ``predict_proba`` returns.

        Only classes that are labels of the config are chosen. One label per task: the likeliest,
        its result left out (the score kept) below ``score_threshold``. With ``choice="multiple"``:
        every label reaching the threshold (``multi_label_prediction``). Aliases are stored as Label
        Studio stores them.
        """
        rows = probabilities.tolist() if hasattr(probabilities, "tolist") else [list(r) for r in probabilities]
        if self.multi_label:
            return [self.multi_label_prediction([str(c) for c in classes], row) for row in rows]
        labels = set(self.labels)
        allowed = [j for j, c in enumerate(classes) if c in labels]
        threshold = self.score_threshold
        predictions = []
        for row in rows:
            if not allowed:
                predictions.append(self.prediction([]))
                continue
            best = max(allowed, key=row.__getitem__)  # the first of equals, as numpy's argmax
            score = row[best]
            chosen = [self.choice_result(str(classes[best]), score)] if score >= threshold else []
            predictions.append(self.prediction(chosen, score))
        return predictions

    def choice_result(self, label: str, score: float) -> dict:
        """A ``choices`` result item selecting ``label``."""
        return self.result_item({"choices": [self._stored.get(label, label)]}, score)

    def span_result(self, start: int, end: int, text: str, label: str, score: float | None = None) -> dict:
        """A ``labels`` result item marking ``text[start:end]`` with ``label`` (a score only when given)."""
        stored = self._stored.get(label, label)  # the alias, when the label has one, as Label Studio stores it
        return self.result_item({"start": start, "end": end, "text": text, "labels": [stored]}, score)

    def box_result(self, corners: Sequence[float], width: int, height: int, label: str, score: float) -> dict:
        """A ``rectanglelabels`` result item: pixel corners ``x1, y1, x2, y2`` in the image as displayed
        (``width`` x ``height``), stored as Label Studio does, in percent of that image."""
        value = {**to_percent(corners, width, height), "rectanglelabels": [self._stored.get(label, label)]}
        item = self.result_item(value, score)
        return {**item, "original_width": int(width), "original_height": int(height), "image_rotation": 0}

    def prediction(self, result: list[dict], score: float = 0.0) -> dict:
        """One task's prediction in Label Studio's format."""
        return {"result": result, "score": float(score), "model_version": self.model_version}


def _value_or_none(model: LabelStudioMLBase, task: dict) -> Any:
    """What a recorded task holds in the model's field, None when it has none (fetching it then fails
    as that task's ``MediaError``)."""
    try:
        return model.task_value(task)
    except TaskDataError:
        return None
