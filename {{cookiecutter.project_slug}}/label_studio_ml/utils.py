"""The helpers upstream examples import from ``label_studio_ml.utils``."""

from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from typing import Any

__all__ = ["DATA_UNDEFINED_NAME", "InMemoryLRUDictCache", "get_choice", "get_env", "get_first_tag_keys",
           "get_image_size", "get_single_tag_keys", "is_skipped", "match_labels"]

#: The task data key Label Studio uses when a config's object tag reads no named field.
DATA_UNDEFINED_NAME = "$undefined$"


def get_env(name: str, default: Any = None, is_bool: bool = False) -> Any:
    """``LABEL_STUDIO_ML_BACKEND_<name>``, else ``<name>``, from the environment, else ``default``."""
    for key in ("LABEL_STUDIO_ML_BACKEND_" + name, name):
        value = os.environ.get(key)
        if value is not None:
            return value.strip().lower() in ("1", "true", "yes", "on") if is_bool else value
    return default


def get_single_tag_keys(parsed_label_config: dict, control_type: str, object_type: str) -> tuple:
    """``(from_name, to_name, value, labels)`` of a config with exactly one ``control_type`` over one ``object_type``.

    ``ValueError`` saying what the config has instead (upstream asserts).
    """
    if len(parsed_label_config) != 1:
        raise ValueError(f"this model needs exactly one control tag in the labeling config, found "
                         f"{len(parsed_label_config)}")
    from_name, info = next(iter(parsed_label_config.items()))
    if info["type"] != control_type:
        raise ValueError(f'the labeling config has <{info["type"]}>, this model needs <{control_type}>')
    if len(info["to_name"]) != 1 or len(info["inputs"]) != 1 or info["inputs"][0]["type"] != object_type:
        raise ValueError(f"<{control_type} name={from_name!r}> must point at exactly one <{object_type}> tag")
    return from_name, info["to_name"][0], info["inputs"][0]["value"], info["labels"]


def get_first_tag_keys(parsed_label_config: dict, control_type: str, object_type: str) -> tuple:
    """``(from_name, info)`` of the first ``control_type`` reading an ``object_type``, else ``(None, None)``."""
    for from_name, info in parsed_label_config.items():
        if info["type"] == control_type and any(i["type"] == object_type for i in info["inputs"]):
            return from_name, info
    return None, None


def is_skipped(task: dict) -> bool:
    """Whether a task's only annotation was skipped."""
    annotations = task.get("annotations") or []
    return len(annotations) == 1 and bool(annotations[0].get("skipped") or annotations[0].get("was_cancelled"))


def get_choice(task: dict) -> str:
    """The first choice of a task's first annotation."""
    return task["annotations"][0]["result"][0]["value"]["choices"][0]


def get_image_size(filepath: str) -> tuple[int, int]:
    """``(width, height)`` of an image file, EXIF rotation applied (needs Pillow, as upstream's does)."""
    try:
        from PIL import Image, ImageOps
    except ModuleNotFoundError:
        raise ModuleNotFoundError("get_image_size needs Pillow: pip install pillow (the image variant has it)",
                                  name="PIL") from None
    with Image.open(filepath) as image:
        return ImageOps.exif_transpose(image).size


def match_labels(text: str, labels: list[str]) -> list[str]:
    """For each line of ``text`` (an LLM's answer), the config label most similar to it."""
    return [max(labels, key=lambda label: difflib.SequenceMatcher(None, line, label).ratio())
            for line in text.splitlines() if labels]


class InMemoryLRUDictCache:
    """A small least-recently-used cache, as the interactive examples keep per-image state in."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self.cache: OrderedDict = OrderedDict()

    def get(self, key: Any) -> Any:
        if key not in self.cache:
            return None
        self.cache.move_to_end(key)
        return self.cache[key]

    def put(self, key: Any, value: Any) -> None:
        self.cache[key] = value
        self.cache.move_to_end(key)
        if len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
