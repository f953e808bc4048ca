"""The part of the SDK's ``LabelInterface`` that upstream models call, built on ``lsbackend.label_config``.

Upstream examples find their tags with ``get_first_tag_occurence``, ``get_tag`` / ``get_control`` /
``get_object`` and read ``.labels``, ``.attr``, ``.labels_attrs``, ``.objects`` and ``.value_name``;
a few build results with ``control.label(...)`` and wrap them in ``PredictionValue``. This module
answers exactly those calls. It imports in milliseconds and needs nothing beyond the standard
library: the real ``label-studio-sdk`` pulls in 25 dependencies and cannot be installed beside this
repo's numpy pin (see docs/upstream.md).

The config is parsed (and a DTD refused) by ``lsbackend.label_config``, the one parser the runtime
uses; only the attributes of each tag, which that parser does not keep, are read here afterwards.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from lsbackend.label_config import CONTROL_TAGS, LABEL_TAGS, OBJECT_TAGS, parse_label_config

__all__ = ["ControlTag", "LabelInterface", "LabelTag", "ObjectTag", "PredictionValue", "parse_config"]


class LabelTag:
    """One ``<Label>`` or ``<Choice>``: its ``value`` and every attribute (``attr``), e.g. ``predicted_values``."""

    def __init__(self, attr: dict) -> None:
        self.attr = dict(attr)
        self.value = attr.get("value", attr.get("alias", ""))

    def __repr__(self) -> str:
        return f"LabelTag({self.value!r})"


class ObjectTag:
    """A tag showing task data: ``tag`` ("Text"), ``name``, ``value`` ("$text"), ``value_name`` ("text")."""

    def __init__(self, tag: str, attr: dict) -> None:
        self.tag = tag
        self.attr = dict(attr)
        self.name = attr.get("name", "")
        self.value = attr.get("value", "")
        self.value_type = attr.get("valueType", "")

    @property
    def value_name(self) -> str:
        """The task ``data`` field this tag reads."""
        return self.value[1:] if self.value.startswith("$") else self.value

    def __repr__(self) -> str:
        return f"ObjectTag({self.tag} {self.name!r})"


class ControlTag:
    """A tag producing results: ``tag`` ("Choices"), ``name``, ``to_name``, ``labels``, ``labels_attrs``,
    ``objects`` (the object tags it points at)."""

    def __init__(self, tag: str, attr: dict, labels: list[LabelTag], objects: list[ObjectTag]) -> None:
        self.tag = tag
        self.attr = dict(attr)
        self.name = attr.get("name", "")
        self.to_name = [n.strip() for n in attr.get("toName", "").split(",") if n.strip()]
        self.labels_attrs = {label.value: label for label in labels}
        self.labels = list(self.labels_attrs)
        self.objects = objects

    def label(self, label: str | list[str] | None = None, **value: Any) -> dict:
        """One result item of this control: ``choices.label(["Positive"])``, ``textarea.label(text=[...])``,
        ``labels.label("PER", start=0, end=4, text="John")``. The list of labels goes under the tag's
        own key (``choices``, ``labels``, ``rectanglelabels``, ...), the keywords into ``value``."""
        if label is not None:
            value[self.tag.lower()] = list(label) if isinstance(label, list | tuple) else [label]
        return {"from_name": self.name, "to_name": self.to_name[0] if self.to_name else "",
                "type": self.tag.lower(), "value": value}

    def __repr__(self) -> str:
        return f"ControlTag({self.tag} {self.name!r} -> {self.to_name})"


def _matches(tag: str, wanted: str | Iterable[str]) -> bool:
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    return tag.lower() in (n.lower() for n in names)


class LabelInterface:
    """A labeling config as the SDK presents it: ``controls``, ``objects`` and look-ups by name or type."""

    def __init__(self, config: str, **_ignored: Any) -> None:
        self.config = config
        parse_label_config(config)  # the runtime's checks (size, DTD refused, valid XML) before anything is read
        objects: dict[str, ObjectTag] = {}
        found: list[tuple[str, dict, list[LabelTag]]] = []
        for node in ET.fromstring(config).iter():
            kind = node.tag.lower()
            if kind in OBJECT_TAGS:
                objects[node.attrib.get("name", "")] = ObjectTag(OBJECT_TAGS[kind], node.attrib)
            elif kind in CONTROL_TAGS:
                labels = [LabelTag(n.attrib) for n in node.iter() if n is not node and n.tag.lower() in LABEL_TAGS]
                found.append((CONTROL_TAGS[kind], node.attrib, labels))
        self._objects = objects
        self._controls = {}
        for tag, attr, labels in found:
            to_name = [n.strip() for n in attr.get("toName", "").split(",") if n.strip()]
            control = ControlTag(tag, attr, labels, [objects[n] for n in to_name if n in objects])
            self._controls[control.name] = control

    @property
    def controls(self) -> list[ControlTag]:
        return list(self._controls.values())

    @property
    def objects(self) -> list[ObjectTag]:
        return list(self._objects.values())

    @property
    def labels(self) -> list[list[str]]:
        """Each control's labels, in config order."""
        return [control.labels for control in self.controls]

    def get_tag(self, name: str) -> ControlTag | ObjectTag:
        """The control or object tag called ``name``; ``KeyError`` naming the tags there are."""
        tag = self._controls.get(name) or self._objects.get(name)
        if tag is None:
            raise KeyError(f"the labeling config has no tag named {name!r}; it has "
                           f"{', '.join([*self._controls, *self._objects]) or 'none'}")
        return tag

    def get_control(self, name: str | None = None) -> ControlTag:
        """The control called ``name``, or the first control when no name is given."""
        if name is None:
            if not self._controls:
                raise KeyError("the labeling config has no control tag")
            return self.controls[0]
        tag = self.get_tag(name)
        if not isinstance(tag, ControlTag):
            raise KeyError(f"{name!r} is an object tag ({tag.tag}), not a control tag")
        return tag

    def get_object(self, name: str | None = None) -> ObjectTag:
        """The object tag called ``name``, or the first one when no name is given."""
        if name is None:
            if not self._objects:
                raise KeyError("the labeling config has no object tag")
            return self.objects[0]
        tag = self.get_tag(name)
        if not isinstance(tag, ObjectTag):
            raise KeyError(f"{name!r} is a control tag ({tag.tag}), not an object tag")
        return tag

    def get_first_tag_occurence(
        self,
        control_type: str | Iterable[str],
        object_type: str | Iterable[str],
        name_filter: Callable[[str], bool] | None = None,
        to_name_filter: Callable[[str], bool] | None = None,
    ) -> tuple[str, str, str]:
        """``(from_name, to_name, value)`` of the first control of ``control_type`` over an ``object_type``.

        ``value`` is the task data field the object reads. ``ValueError`` naming both types when none fits.
        """
        for control in self.controls:
            if not _matches(control.tag, control_type) or (name_filter and not name_filter(control.name)):
                continue
            for obj in control.objects:
                if _matches(obj.tag, object_type) and not (to_name_filter and not to_name_filter(obj.name)):
                    return control.name, obj.name, obj.value_name
        raise ValueError(f"the labeling config has no {control_type} control over a {object_type} tag")


def parse_config(config: str) -> dict:
    """The SDK's ``parse_config`` shape: control name -> type, to_name, inputs, labels, labels_attrs."""
    interface = LabelInterface(config)
    return {
        control.name: {
            "type": control.tag,
            "to_name": list(control.to_name),
            "inputs": [{"type": o.tag, "valueType": o.value_type or None, "value": o.value_name}
                       for o in control.objects],
            "labels": list(control.labels),
            "labels_attrs": {value: dict(label.attr) for value, label in control.labels_attrs.items()},
        }
        for control in interface.controls
    }


class PredictionValue:
    """One task's prediction: ``result`` (items or ``control.label(...)`` regions), ``score``, ``model_version``."""

    def __init__(self, result: list | None = None, score: float = 0.0, model_version: str | None = None,
                 **extra: Any) -> None:
        self.result = list(result or [])
        self.score = score
        self.model_version = model_version
        self.extra = extra

    def model_dump(self, **_ignored: Any) -> dict:
        """The prediction as Label Studio takes it (what the SDK's pydantic ``model_dump`` gives)."""
        dumped = {"result": [dict(item) for item in self.result], "score": self.score,
                  "model_version": self.model_version, **self.extra}
        return dumped

    def serialize(self) -> dict:
        return self.model_dump()

    def __repr__(self) -> str:
        return f"PredictionValue({len(self.result)} items, score={self.score!r})"
