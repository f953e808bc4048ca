"""Turn what upstream ``predict`` and ``fit`` methods take and give into what the runtime speaks.

The runtime calls ``predict(tasks, context=...)`` and wants exactly one prediction dict per task;
it calls ``fit(annotations)`` once per (debounced) training and wants a dict back. Upstream
models answer with ``ModelResponse``, ``PredictionValue``, lists of several predictions per
task or numpy numbers, and take ``fit(event, data)`` (2.x) or ``fit(tasks, workdir)`` (1.x).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["as_plain", "fit_style", "predictions_per_task", "start_training_data", "tasks_of"]

#: First ``fit`` parameter names of the 1.x shape: ``fit(completions, workdir=None, **kwargs)``.
TASKS_FIT_PARAMS = ("completions", "annotations", "tasks", "tasks_with_annotations")


def as_plain(value: Any) -> Any:
    """``value`` with numpy numbers and arrays made plain Python (``float``, ``int``, lists) for JSON."""
    if isinstance(value, dict):
        return {key: as_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_plain(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, numbers.Number) and not isinstance(value, bool | int | float):
        return float(value)
    return value


def _one(prediction: Any) -> dict:
    """One task's prediction as a dict: the first of several, a ``PredictionValue`` dumped."""
    if isinstance(prediction, list):
        prediction = prediction[0] if prediction else {"result": []}
    if hasattr(prediction, "model_dump") and not isinstance(prediction, dict):
        prediction = prediction.model_dump()
    if not isinstance(prediction, dict):
        raise TypeError(f"predict gave a {type(prediction).__name__} for a task; give a dict, a PredictionValue "
                        "or a list of them per task")
    return as_plain(prediction)


def predictions_per_task(answer: Any, task_count: int, version: str) -> list[dict]:
    """What ``predict`` returned, as one dict per task carrying the served ``version``.

    An empty answer (an interactive model asked without a context) is an empty prediction per
    task; any other count is handed on as it is, so the runtime reports the mismatch.
    """
    predictions = getattr(answer, "predictions", answer)
    if predictions is None:
        predictions = []
    if not isinstance(predictions, list):
        raise TypeError(f"predict returned a {type(answer).__name__}; return a ModelResponse or a list "
                        "with one prediction per task")
    if not predictions:
        predictions = [{"result": [], "score": 0.0} for _ in range(task_count)]
    found = [_one(prediction) for prediction in predictions]
    for prediction in found:
        prediction["model_version"] = version  # the version this backend serves, whatever the model named
        prediction.setdefault("score", 0.0)
    return found


def fit_style(parameters: Iterable[str]) -> str:
    """``"event"`` for ``fit(event, data, **kwargs)``, ``"tasks"`` for the 1.x ``fit(completions, ...)``."""
    names = list(parameters)
    first = names[0] if names else ""
    if first == "event":
        return "event"
    if first in TASKS_FIT_PARAMS:
        return "tasks"
    raise TypeError(f"cannot tell how to call fit{tuple(names)}: name its first parameter 'event' "
                    "(fit(event, data, **kwargs)) or 'completions' (fit(completions, workdir=None, **kwargs))")


def tasks_of(annotations: list[dict]) -> list[dict]:
    """The runtime's annotations regrouped as Label Studio export tasks: ``{"id", "data", "annotations"}``."""
    tasks: dict[Any, dict] = {}
    for annotation in annotations:
        task = annotation.get("task") or {}
        entry = tasks.setdefault(task.get("id"), {"id": task.get("id"), "data": task.get("data") or {},
                                                  "annotations": []})
        entry["annotations"].append({key: value for key, value in annotation.items() if key != "task"}
                                    | {"task": task.get("id")})
    return list(tasks.values())


def project_number(project: str) -> int | str:
    """Label Studio's project id as its webhooks carry it (a number), when it is one."""
    return int(project) if str(project).isdigit() else project


def start_training_data(annotations: list[dict], project: str, label_config: str) -> dict:
    """The ``data`` of a ``START_TRAINING`` event: the project, and the newest annotation as upstream reads it."""
    newest = max(annotations, key=lambda a: a.get("updated_at") or "", default={})
    task = newest.get("task") or {}
    annotation = {**{k: v for k, v in newest.items() if k != "task"}, "task": task.get("id"),
                  "project": project_number(project)}
    return {"action": "START_TRAINING", "annotation": annotation, "task": task,
            "project": {"id": project_number(project), "label_config": label_config}}
