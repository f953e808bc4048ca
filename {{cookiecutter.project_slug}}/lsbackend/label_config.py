"""Parse a Label Studio labeling config and check that it fits a model type.

This module is the ONE place that decides whether a config fits: the
cookiecutter post-generation hook loads this file straight from the freshly
generated folder, the server runs it at ``/setup`` and ``/predict``, and the
``check`` CLI command runs it on demand. It therefore uses the standard
library only and imports nothing from the rest of the package.
"""

from __future__ import annotations

import functools
import os
import sys
import xml.parsers.expat
from dataclasses import dataclass, field

MAX_CONFIG_BYTES = 1_000_000

#: Control tags (what the annotator produces), by lowercase name.
CONTROL_TAGS = {
    t.lower(): t
    for t in (
        "Choices Labels RectangleLabels PolygonLabels KeyPointLabels BrushLabels "
        "EllipseLabels HyperTextLabels ParagraphLabels TimeSeriesLabels VideoRectangle "
        "Rectangle Polygon KeyPoint Brush Ellipse TextArea Rating Number DateTime "
        "Taxonomy Relations Pairwise Ranker List MagicWand BitmaskLabels"
    ).split()
}
#: Object tags (what is being labeled), by lowercase name.
OBJECT_TAGS = {
    t.lower(): t
    for t in (
        "Text HyperText Image Audio AudioPlus Video Table Paragraphs TimeSeries "
        "Pdf Markdown Chat"
    ).split()
}
LABEL_TAGS = {"choice", "label"}
#: Tools whose regions Label Studio sends to the model as an interaction when ``smart="true"`` (or
#: ``smartOnly="true"``) is set on them and "Interactive preannotations" is on.
SMART_TOOLS = frozenset(
    "Rectangle RectangleLabels Ellipse EllipseLabels KeyPoint KeyPointLabels Polygon PolygonLabels "
    "Brush BrushLabels".split()
)


class ConfigError(ValueError):
    """A labeling config that cannot be used, with what to do about it.

    ``reason`` is one short ASCII line: Label Studio shows nothing but the
    HTTP reason phrase to its user, so it must carry the gist on its own.
    """

    def __init__(self, reason: str, detail: str = "", example: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.example = example

    def explain(self) -> str:
        """The full message for a terminal: reason, detail and a working snippet."""
        parts = [self.reason]
        if self.detail:
            parts.append(self.detail)
        if self.example:
            parts.append("A config that works:\n" + self.example)
        return "\n".join(parts)


@dataclass(frozen=True)
class ObjectTag:
    """A tag that shows task data, like ``<Text name="text" value="$text"/>``."""

    name: str
    type: str
    value: str
    value_type: str = ""  # ``valueType``: "url" means the task field holds a URL to the content

    @property
    def data_key(self) -> str | None:
        """The task ``data`` field this tag reads (``$text`` -> ``text``)."""
        return self.value[1:] if self.value.startswith("$") and len(self.value) > 1 else None


@dataclass(frozen=True)
class ControlTag:
    """A tag that produces results, like ``<Choices name="sentiment" toName="text">``."""

    name: str
    type: str
    to_name: tuple[str, ...]
    labels: tuple[str, ...]
    attrs: dict = field(default_factory=dict, compare=False, hash=False)
    #: ``(value, alias)`` of each label with an ``alias``: Label Studio stores the alias in results
    aliases: tuple[tuple[str, str], ...] = ()
    #: ``(model class name, label)`` from ``predicted_values="a,b"`` on ``<Label>``: a detector's own class
    #: names mapped to the config's labels (upstream's YOLO example reads the same attribute)
    predicted_values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a labeling config a model needs."""

    xml: str
    controls: tuple[ControlTag, ...]
    objects: dict

    def as_dict(self) -> dict:
        """Label Studio's own ``parsed_label_config`` shape: control name -> details."""
        return {
            c.name: {
                "type": c.type,
                "to_name": list(c.to_name),
                "inputs": [
                    {"type": self.objects[n].type, "value": self.objects[n].data_key}
                    for n in c.to_name
                    if n in self.objects
                ],
                "labels": list(c.labels),
            }
            for c in self.controls
        }


@dataclass(frozen=True)
class Requirement:
    """What a model type needs from a config: one control over one object."""

    control: str
    object: str
    min_labels: int
    what: str
    example: str
    #: the control must read exactly one object (a box belongs to one image)
    single_object: bool = False


REQUIREMENTS = {
    "text_classification": Requirement(
        "Choices",
        "Text",
        2,
        "classifies whole texts",
        '<View>\n  <Text name="text" value="$text"/>\n'
        '  <Choices name="sentiment" toName="text" choice="single">\n'
        '    <Choice value="Positive"/>\n    <Choice value="Negative"/>\n'
        "  </Choices>\n</View>",
    ),
    "image_classification": Requirement(
        "Choices",
        "Image",
        2,
        "classifies whole images",
        '<View>\n  <Image name="image" value="$image"/>\n'
        '  <Choices name="choice" toName="image" choice="single">\n'
        '    <Choice value="Cat"/>\n    <Choice value="Dog"/>\n'
        "  </Choices>\n</View>",
    ),
    "ner": Requirement(
        "Labels",
        "Text",
        1,
        "finds named entities in text",
        '<View>\n  <Labels name="label" toName="text">\n'
        '    <Label value="PER"/>\n    <Label value="ORG"/>\n    <Label value="LOC"/>\n'
        '  </Labels>\n  <Text name="text" value="$text"/>\n</View>',
    ),
    "object_detection": Requirement(
        "RectangleLabels",
        "Image",
        1,
        "finds objects in images and draws a labeled box around each",
        '<View>\n  <Image name="image" value="$image"/>\n'
        '  <RectangleLabels name="label" toName="image">\n'
        '    <Label value="Square"/>\n    <Label value="Circle"/>\n'
        "  </RectangleLabels>\n</View>",
        single_object=True,
    ),
}

#: What a (control, object) pair is, to explain a mismatch in the user's words.
KNOWN_SHAPES = {
    ("Choices", "Text"): "that is text classification (model_type text_classification)",
    ("Choices", "Image"): "that is image classification (model_type image_classification)",
    ("Labels", "Text"): "that is named-entity recognition (model_type ner)",
    ("RectangleLabels", "Image"): "that is object detection (model_type object_detection)",
    ("Rectangle", "Image"): "boxes without labels; use <RectangleLabels> with <Label> tags to name what each box is",
    ("PolygonLabels", "Image"): "that is segmentation, which needs a different model",
    ("BrushLabels", "Image"): "that is segmentation, which needs a different model",
    ("KeyPointLabels", "Image"): "that is keypoint detection, which needs a different model",
    ("TextArea", "Text"): "that is free-text annotation, which needs a different model",
    ("TextArea", "Image"): "that is captioning, which needs a different model",
}


@dataclass
class _Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)


def _refuse_dtd(*_args: object) -> None:
    raise ConfigError(
        "Labeling config must not contain a DOCTYPE or entities",
        "Label Studio configs never need a DTD; entity declarations are refused "
        "so that an entity-expansion bomb cannot exhaust memory.",
    )


def _parse_xml(text: str) -> _Node:
    """Parse with expat into plain nodes, refusing any DTD before it expands."""
    parser = xml.parsers.expat.ParserCreate(encoding="utf-8")  # we pass UTF-8 bytes, whatever the declaration says
    root = _Node("#document", {})
    stack = [root]

    def start(tag: str, attrs: dict) -> None:
        node = _Node(tag, attrs)
        stack[-1].children.append(node)
        stack.append(node)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _tag: stack.pop()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"Labeling config is not valid text: unpaired surrogate at character {exc.start}",
            "The config contains a lone UTF-16 surrogate (an escaped \\udXXX); send it as proper UTF-8.",
        ) from None
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise ConfigError(
            f"Labeling config is not valid XML: {xml.parsers.expat.ErrorString(exc.code)} "
            f"at line {exc.lineno}, column {exc.offset + 1}",
            "Check that every tag is closed (<Choice value=\"A\"/>) and quotes match.",
        ) from None
    return root.children[0]


def _walk(node: _Node):
    """Every node under ``node`` in document order, without recursion (configs may nest deeply)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _label_nodes(node: _Node) -> list[_Node]:
    return [n for n in _walk(node) if n is not node and n.tag.lower() in LABEL_TAGS]


def _labels_of(node: _Node) -> tuple[str, ...]:
    return tuple(n.attrs.get("value", n.attrs.get("alias", "")) for n in _label_nodes(node))


def _aliases_of(node: _Node) -> tuple[tuple[str, str], ...]:
    return tuple(
        (n.attrs["value"], n.attrs["alias"]) for n in _label_nodes(node) if "value" in n.attrs and n.attrs.get("alias")
    )


def _predicted_values_of(node: _Node) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name.strip(), n.attrs["value"])
        for n in _label_nodes(node) if "value" in n.attrs
        for name in n.attrs.get("predicted_values", "").split(",") if name.strip()
    )


@functools.lru_cache(maxsize=64)
def read_config_file(path: str | os.PathLike[str]) -> str | None:
    """The repo's default labeling config (``LABEL_CONFIG``), or None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def parse_label_config(xml_text: str) -> LabelConfig:
    """Parse a labeling config into its control and object tags.

    Cached by the config text: Label Studio sends the same config with every
    request, and parsing it once per process is enough.
    """
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise ConfigError("Labeling config is empty", "Send the project's labeling config XML.")
    if len(xml_text.encode("utf-8", "replace")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"Labeling config is larger than {MAX_CONFIG_BYTES} bytes")
    root = _parse_xml(xml_text)
    objects, controls = {}, []
    for node in _walk(root):
        kind = node.tag.lower()
        name = node.attrs.get("name", "")
        if kind in OBJECT_TAGS:
            objects[name] = ObjectTag(name, OBJECT_TAGS[kind], node.attrs.get("value", ""),
                                      node.attrs.get("valueType", ""))
        elif kind in CONTROL_TAGS:
            to_name = tuple(n.strip() for n in node.attrs.get("toName", "").split(",") if n.strip())
            controls.append(
                ControlTag(name, CONTROL_TAGS[kind], to_name, _labels_of(node), node.attrs, _aliases_of(node),
                           _predicted_values_of(node))
            )
    return LabelConfig(xml_text, tuple(controls), objects)


def _mismatch(req: Requirement, config: LabelConfig) -> ConfigError:
    found = []
    for c in config.controls:
        for name in c.to_name:
            if name in config.objects:
                found.append((c.type, config.objects[name].type))
    wanted = f"{req.control} over {req.object}"
    if not found:
        return ConfigError(
            f"Labeling config does not fit: needs {wanted}",
            f"This model {req.what}: it needs a <{req.control}> control whose toName "
            f"names an <{req.object}> tag; the config has none.",
            req.example,
        )
    control, obj = found[0]
    why = KNOWN_SHAPES.get((control, obj), "which this model does not handle")
    return ConfigError(
        f"Labeling config does not fit: needs {wanted}, found {control} over {obj}",
        f"This model {req.what}; the config has <{control}> over <{obj}>: {why}.",
        req.example,
    )


def check_fit(config: str | LabelConfig, model_type: str) -> tuple[ControlTag, ObjectTag]:
    """Check that ``config`` fits ``model_type``; return the control and object to use.

    Raises ``ConfigError`` naming what is missing and showing a config that works.
    """
    if model_type not in REQUIREMENTS:
        raise ConfigError(f"Unknown model type {model_type!r}; known: {', '.join(REQUIREMENTS)}")
    req = REQUIREMENTS[model_type]
    if isinstance(config, str):
        config = parse_label_config(config)
    if not config.objects:
        raise ConfigError(
            "Labeling config has no object tag to label",
            f"Add an <{req.object}> tag that reads a task field, for example "
            f'<{req.object} name="{req.object.lower()}" value="${req.object.lower()}"/>.',
            req.example,
        )
    for control in config.controls:
        dangling = [n for n in control.to_name if n not in config.objects]
        if dangling or not control.to_name:
            names = ", ".join(sorted(config.objects))
            raise ConfigError(
                f"{control.type} {control.name!r} has toName={','.join(control.to_name)!r} "
                "but no object tag has that name",
                f"Set toName to the name of an object tag; the config has: {names}.",
                req.example,
            )
    for control in config.controls:
        if control.type != req.control:
            continue
        for name in control.to_name:
            obj = config.objects[name]
            if obj.type != req.object:
                continue
            _check_usable(req, control, obj)
            prompt_controls(config, control, obj, req.example)  # a smart tool must point at this object
            return control, obj
    raise _mismatch(req, config)


def is_smart(control: ControlTag) -> bool:
    """Whether the editor sends this control's regions to the model as they are made."""
    return control.type in SMART_TOOLS and any(
        str(control.attrs.get(flag, "")).lower() == "true" for flag in ("smart", "smartOnly"))


def interaction_role(control: ControlTag, output: ControlTag) -> str:
    """What a prompt control's regions are to the model, in the words the check prints."""
    if control is output and control.type == "Labels":
        return "spans the annotator labels"
    return "prompt text" if control.type == "TextArea" else "smart tool"


def prompt_controls(config: LabelConfig, control: ControlTag, obj: ObjectTag,
                    example: str = "") -> tuple[ControlTag, ...]:
    """The controls whose regions reach the model as interactions, beside ``control`` (the one it fills).

    Smart tools and ``TextArea`` prompts over ``obj``, and ``control`` itself when it marks text
    spans (Labels over Text: the span just labeled is the interaction) or is a smart tool (a
    detection model's smart RectangleLabels: the box just drawn is the interaction). A smart tool over another
    object would send the model prompts about data it does not read: ``ConfigError`` says so.
    """
    found = []
    for other in config.controls:
        if other is control:  # the output control's own regions: labeled spans, or a smart tool's boxes
            if (control.type == "Labels" and obj.type == "Text") or is_smart(control):
                found.append(control)
            continue
        if obj.name in other.to_name and (is_smart(other) or other.type == "TextArea"):
            found.append(other)
        elif is_smart(other):
            targets = ", ".join(f"{config.objects[n].type} {n!r}" for n in other.to_name if n in config.objects)
            raise ConfigError(
                f"{other.type} {other.name!r} is a smart tool over {targets}, not over {obj.type} {obj.name!r}",
                f"Label Studio sends what the annotator draws with a smart tool to the model as a prompt, and "
                f"the model reads {obj.type} {obj.name!r}: set toName=\"{obj.name}\" on {other.name!r}, or drop "
                'smart="true" to make it an ordinary tool.',
                example,
            )
    return tuple(found)


def describe_fit(config: LabelConfig, control: ControlTag, obj: ObjectTag) -> str:
    """Which control is which: the one the model fills, the object it reads, and its interactions."""
    text = f"{control.type} {control.name!r} over {obj.type} {obj.name!r} (${obj.data_key})"
    prompts = prompt_controls(config, control, obj)
    if prompts:
        text += "; interactions: " + ", ".join(
            f"{p.type} {p.name!r} ({interaction_role(p, control)})" for p in prompts)
    return text


def _check_usable(req: Requirement, control: ControlTag, obj: ObjectTag) -> None:
    if req.single_object and len(control.to_name) > 1:
        raise ConfigError(
            f"{control.type} {control.name!r} must draw on one {req.object}, not several",
            f"toName={','.join(control.to_name)!r}: a box belongs to one image. Give each <{req.object}> "
            f"its own <{req.control}> (this model fills the first), or label one image per task.",
            req.example,
        )
    if len(set(control.labels)) < req.min_labels:
        child = "Choice" if req.control == "Choices" else "Label"
        raise ConfigError(
            f"{control.type} {control.name!r} needs at least {req.min_labels} "
            f"{child} values, has {len(set(control.labels))}",
            f'Add <{child} value="..."/> tags inside <{control.type} name="{control.name}">.',
            req.example,
        )
    if obj.data_key is None:
        raise ConfigError(
            f"{obj.type} {obj.name!r} has value={obj.value!r}; it must read a task field "
            f'like value="${obj.name}"',
            "The object tag's value names the task data field the model reads.",
            req.example,
        )


def main(argv: list[str] | None = None) -> int:
    """``python label_config.py CONFIG.xml MODEL_TYPE``: exit 0 when it fits."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: label_config.py CONFIG.xml MODEL_TYPE", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        text = fh.read()
    try:
        config = parse_label_config(text)
        control, obj = check_fit(config, args[1])
    except ConfigError as exc:
        print(exc.explain(), file=sys.stderr)
        return 1
    print(f"OK: {describe_fit(config, control, obj)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
