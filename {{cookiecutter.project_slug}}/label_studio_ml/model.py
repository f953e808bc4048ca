"""``LabelStudioMLBase`` as upstream's ``label_studio_ml`` SDK defines it, on this runtime's base class.

An upstream ``model.py`` (``from label_studio_ml.model import LabelStudioMLBase``) runs unchanged:
the runtime builds, serves and trains it like a native model, and this class translates.

- Signatures: ``__init_subclass__`` wraps the subclass's ``__init__`` (1.x ``__init__(**kwargs)``
  gets keywords), ``predict`` (``ModelResponse`` / ``PredictionValue`` / several per task -> one dict
  per task with the served version) and ``fit`` (``fit(event, data)`` is called once per training
  with ``START_TRAINING``; the 1.x ``fit(completions, workdir)`` gets tasks with their annotations).
- ``get`` / ``set`` / ``has``: a per-project key-value store in this process;
  ``get("model_version")`` is always the version this backend serves, so predictions and
  ``/setup`` agree and Label Studio does not re-predict forever.
- ``labels``, ``score_threshold`` and ``parsed_label_config`` (upstream's shape) are writable.
- ``get_local_path`` / ``preload_task_data`` load media through ``lsbackend.media`` (SSRF-guarded,
  size-limited) into a cache file.
- Own files: what ``fit`` saves itself in ``MODEL_DIR`` travels inside the version it makes and is
  written back before a model object of that version is built (``own_files``): rollback and the
  S3 store work for it too.
- Module globals: upstream models keep their model in module globals that ``fit`` replaces, but
  fit runs in another process here. When the served version changes, the model's module is
  re-imported before the new object is built, so no stale global keeps predicting.

What stays different is written in docs/upstream.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import logging
import os
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

from lsbackend import base
from lsbackend.label_config import ConfigError, ControlTag, LabelConfig, ObjectTag
from lsbackend.media import MediaResolver
from lsbackend.settings import Settings

from . import own_files
from .adapters import fit_style, predictions_per_task, start_training_data, tasks_of
from .label_interface import LabelInterface, parse_config
from .response import ModelResponse
from .sdk_client import training_tasks

__all__ = ["LabelStudioMLBase", "ModelResponse"]

log = logging.getLogger(__name__)

#: (project, key) -> value: what ``set`` kept, for this process.
_VALUES: dict[tuple[str, str], Any] = {}
#: module name -> the version the objects of its model class were last built with, in this process.
_BUILT_WITH: dict[str, str] = {}
_RELOAD_LOCK = threading.Lock()
#: Task values that name a file to load rather than hold the content (``preload_task_data``).
PRELOAD_PREFIXES = ("http://", "https://", "s3://", "gs://", "azure-blob://", "file://", "/data/", "data:")
MEDIA_CACHE = Path(tempfile.gettempdir()) / "label-studio-ml-media"


def refresh_module_globals(cls: type, version: str) -> None:
    """Re-import ``cls``'s module when this process is about to serve another version of it.

    Upstream ``fit`` replaces module globals (``_model = None``) that the training process,
    not this one, saw change. Re-running the module resets them; its classes keep their
    identity (the runtime holds, and pickles for training, the class it loaded first).
    """
    name = cls.__module__
    module = sys.modules.get(name)
    with _RELOAD_LOCK:
        before = _BUILT_WITH.get(name)
        _BUILT_WITH[name] = version
        if module is None or before is None or before == version or name == "__main__":
            return
        classes = {key: obj for key, obj in vars(module).items()
                   if inspect.isclass(obj) and obj.__module__ == name}
        log.info("model version %s -> %s: re-importing %s so its module globals are fresh", before, version, name)
        importlib.reload(module)
        vars(module).update(classes)


def prepare_version(cls: type, kwargs: dict) -> None:
    """Before a model object of a version is built: put back the files its training saved itself,
    then give the model's module fresh globals if this process served another version before."""
    files = (kwargs.get("train_output") or {}).get(own_files.KEY)
    if files:
        own_files.restore(Path((kwargs.get("settings") or Settings()).model_dir), files)
    refresh_module_globals(cls, kwargs.get("model_version", base.INITIAL_VERSION))


def _keyword_init(init: Any) -> Any:
    """Let a 1.x ``__init__(self, **kwargs)`` take the runtime's positional ``label_config, project_id``."""
    @functools.wraps(init)
    def init_with_keywords(self: LabelStudioMLBase, *args: Any, **kwargs: Any) -> None:
        kwargs.update(zip(("label_config", "project_id"), args, strict=False))
        prepare_version(type(self), kwargs)
        init(self, **kwargs)
    init_with_keywords.__upstream_adapted__ = True
    return init_with_keywords


def _one_prediction_per_task(predict: Any) -> Any:
    @functools.wraps(predict)
    def predict_per_task(self: LabelStudioMLBase, tasks: list[dict], context: dict | None = None,
                         **kwargs: Any) -> list[dict]:
        answer = predict(self, tasks, context=context, **kwargs)
        return predictions_per_task(answer, len(tasks), self.model_version)
    predict_per_task.__upstream_adapted__ = True
    return predict_per_task


def _fit_once_per_training(fit: Any) -> Any:
    style = fit_style(list(inspect.signature(fit).parameters)[1:])

    @functools.wraps(fit)
    def fit_annotations(self: LabelStudioMLBase, annotations: list[dict], **kwargs: Any) -> dict:
        tasks = tasks_of(annotations)
        model_dir = Path(self.settings.model_dir)
        before = own_files.snapshot(model_dir)
        with training_tasks(self.project_id, tasks):
            if style == "event":
                data = start_training_data(annotations, self.project_id, self.label_config)
                output = fit(self, "START_TRAINING", data, **kwargs)
            else:
                output = fit(self, tasks, workdir=str(model_dir), **kwargs)
        output = dict(output) if isinstance(output, dict) else {}
        files = own_files.changed_files(model_dir, before)
        if files:  # versioned with the rest: rollback and the S3 store bring them back (own_files)
            output[own_files.KEY] = files
        return output
    fit_annotations.__upstream_adapted__ = True
    return fit_annotations


class LabelStudioMLBase(base.LabelStudioMLBase):
    """Base class of upstream ``label_studio_ml`` models, served by this runtime (see the module doc)."""

    INITIAL_MODEL_VERSION: ClassVar[str] = base.INITIAL_VERSION
    TRAIN_EVENTS: ClassVar[tuple[str, ...]] = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                                               "START_TRAINING")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        adapters = {"__init__": _keyword_init, "predict": _one_prediction_per_task, "fit": _fit_once_per_training}
        for name, adapt in adapters.items():
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__upstream_adapted__", False):
                setattr(cls, name, adapt(method))

    def __init__(self, label_config: str | None = None, project_id: str = "default", **kwargs: Any) -> None:
        if isinstance(project_id, str) and project_id.lstrip().startswith("<") and not str(label_config or "") \
                .lstrip().startswith("<"):
            label_config, project_id = project_id, label_config or "default"  # upstream's (project_id, label_config)
        prepare_version(type(self), kwargs)  # does nothing when the 1.x __init__ adapter did it already
        self._label_interface: LabelInterface | None = None
        self._media: MediaResolver | None = None
        super().__init__(label_config, str(project_id), **kwargs)

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        """A model without ``fit`` does not learn: a training fails saying so, and the model keeps serving."""
        raise NotImplementedError(f"{type(self).__name__} has no fit method: it does not learn from annotations "
                                  "(Label Studio's Start Training has nothing to do for it)")

    # --- configs: any control over an object, as upstream checks nothing -------------
    @classmethod
    def check_config(cls, config: LabelConfig) -> tuple[ControlTag, ObjectTag]:
        """The first control over an object tag: upstream models read the config themselves."""
        for control in config.controls:
            for name in control.to_name:
                if name in config.objects:
                    return control, config.objects[name]
        raise ConfigError(
            "Labeling config has no control tag over an object tag",
            "Give a control (Choices, Labels, RectangleLabels, ...) a toName naming an object tag "
            "(Text, Image, ...).",
            '<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text">\n'
            '    <Choice value="A"/>\n    <Choice value="B"/>\n  </Choices>\n</View>',
        )

    @property
    def label_interface(self) -> LabelInterface:
        if self._label_interface is None:
            self._label_interface = LabelInterface(self.label_config)
        return self._label_interface

    def use_label_config(self, label_config: str) -> None:
        self.label_config = label_config
        self._label_interface = None

    @property
    def parsed_label_config(self) -> dict:
        """Upstream's ``parse_config`` shape (with ``valueType`` and ``labels_attrs``), unless a model set its own."""
        return self.__dict__.get("_parsed_label_config") or parse_config(self.label_config)

    @parsed_label_config.setter
    def parsed_label_config(self, value: dict) -> None:
        if value != self.config.as_dict():  # the runtime's own shape, set by its __init__, is not kept
            self.__dict__["_parsed_label_config"] = value

    @property
    def labels(self) -> list[str]:
        return self.__dict__.get("_labels", None) or base.LabelStudioMLBase.labels.fget(self)

    @labels.setter
    def labels(self, value: list[str]) -> None:
        self.__dict__["_labels"] = value

    @property
    def score_threshold(self) -> float:
        if "_score_threshold" in self.__dict__:
            return self.__dict__["_score_threshold"]
        return base.LabelStudioMLBase.score_threshold.fget(self)

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.__dict__["_score_threshold"] = value

    # --- the key-value API --------------------------------------------------------------
    def get(self, key: str) -> Any:
        """A value ``set`` kept for this project; ``model_version`` is always the served version."""
        if key == "model_version":
            return self.model_version
        if key == "label_config":
            return self.label_config
        if key == "parsed_label_config":
            return json.dumps(self.parsed_label_config)
        if key == "extra_params":
            return json.dumps(self.extra_params)
        return _VALUES.get((self.project_id, key))

    def set(self, key: str, value: Any) -> None:
        """Keep ``value`` for this project in this process. ``model_version`` names the model's own
        release (kept as ``upstream_version``); the served version is the runtime's."""
        if key == "model_version":
            self.upstream_version = value
        elif key == "extra_params":
            self.extra_params = json.loads(value) if isinstance(value, str) else dict(value or {})
        else:
            _VALUES[(self.project_id, key)] = value

    def has(self, key: str) -> bool:
        return key in ("model_version", "label_config", "parsed_label_config", "extra_params") \
            or (self.project_id, key) in _VALUES

    def set_extra_params(self, extra_params: dict) -> None:
        self.extra_params = dict(extra_params or {})

    def bump_model_version(self) -> str:
        """The runtime numbers versions itself (one per successful training): this returns the served one."""
        return self.model_version

    def get_first_tag_occurence(self, control_type: Any, object_type: Any, name_filter: Any = None,
                                to_name_filter: Any = None) -> tuple[str, str, str]:
        return self.label_interface.get_first_tag_occurence(control_type, object_type, name_filter, to_name_filter)

    def build_label_map(self, tag_name: str, names: list[str]) -> dict[str, str]:
        """Model class name -> config label: a label's ``predicted_values``, else the same name in any case."""
        found: dict[str, str] = {}
        lower = {name.lower(): name for name in names}
        for label, tag in self.label_interface.get_control(tag_name).labels_attrs.items():
            wanted = [v.strip() for v in tag.attr.get("predicted_values", "").split(",") if v.strip() in names]
            for value in wanted:
                found[value] = label
            if not wanted and label in names:
                found[label] = label
            elif not wanted and label.lower() in lower:
                found[lower[label.lower()]] = label
        return found

    # --- media ----------------------------------------------------------------------------
    def get_local_path(self, url: str, project_dir: str | None = None, ls_host: str | None = None,
                       ls_access_token: str | None = None, task_id: Any = None, *args: Any, **kwargs: Any) -> str:
        """A local file holding what ``url`` refers to, loaded through the runtime's media resolver.

        ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (settings) are used, not ``ls_host`` /
        ``ls_access_token``: keys go only to the Label Studio the backend is configured for.
        """
        if self._media is None:
            self._media = MediaResolver(self.settings)
        data = self._media.fetch(url, task_id)
        suffix = Path(urllib.parse.urlsplit(url).path).suffix[:16] if not url.startswith("data:") else ""
        path = MEDIA_CACHE / (hashlib.sha256(data).hexdigest() + suffix)
        if not path.exists():
            MEDIA_CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=MEDIA_CACHE, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        return str(path)

    def preload_task_data(self, task: dict, value: Any = None, read_file: bool = True) -> Any:
        """``value`` (default: the task's data) with every URL or Label Studio path replaced by its text
        (or, with ``read_file=False``, by a local file path); other values are kept as they are."""
        if value is None:
            value = task.get("data")
        if isinstance(value, dict):
            return {key: self.preload_task_data(task, item, read_file) for key, item in value.items()}
        if isinstance(value, list):
            return [self.preload_task_data(task, item, read_file) for item in value]
        if isinstance(value, str) and value.strip().lower().startswith(PRELOAD_PREFIXES):
            path = self.get_local_path(value.strip(), task_id=task.get("id"))
            return Path(path).read_text(encoding="utf-8", errors="replace") if read_file else path
        return value
