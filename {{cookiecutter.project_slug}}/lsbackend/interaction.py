"""What the annotator just did, for Label Studio's interactive pre-annotation.

With "Interactive preannotations" on, the editor sends each region the annotator
makes with a smart tool (a keypoint, a rectangle), a text span or a ``TextArea``
prompt to ``/predict`` as ``params.context = {"result": [<regions>]}``, for one
task, and shows the first prediction's items as suggestions (stored nowhere).
Opening a task sends ``{"result": []}``; batch predictions send no context.
``parse_interaction`` turns that into ``Region`` objects, or None when there is
no interaction (absent, None or an empty result alike), so a model branches once.

Coordinates arrive in percent of the image, with ``original_width`` and
``original_height`` in pixels; ``Region.pixel_box`` and ``Region.pixel_point``
convert. ``TaskCache`` keeps what an interactive model computed for a task (a
decoded image, features, predictions) while the annotator works on it.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

#: A region's kind, from its ``type``: what a model can do with it.
POINT_TYPES = {"keypoint", "keypointlabels"}
BOX_TYPES = {"rectangle", "rectanglelabels"}
SPAN_TYPES = {"labels", "hypertextlabels", "paragraphlabels"}
PROMPT_TYPES = {"textarea"}
SHAPE_TYPES = {"ellipse", "ellipselabels", "polygon", "polygonlabels", "brush", "brushlabels"}
MAX_REGIONS = 1000  # an interaction is what one annotator just did: more is not an interaction


class InteractionError(ValueError):
    """``params.context`` is not what Label Studio sends; the message names the item and the field."""


@dataclass(frozen=True)
class Region:
    """One region of an interaction, in the annotator's terms.

    ``kind`` is "point", "box", "span", "prompt" or "shape" (ellipse, polygon, brush: passed on,
    not interpreted). Image geometry is in percent of the image (Label Studio's unit); ``label``
    is the first of ``labels`` (None for a tool without labels, such as a plain smart Rectangle).
    """

    type: str
    kind: str
    from_name: str = ""
    to_name: str = ""
    id: str | None = None
    labels: tuple[str, ...] = ()
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    rotation: float = 0.0
    original_width: int | None = None
    original_height: int | None = None
    positive: bool = True  # ``is_positive``: alt-click makes a negative keypoint
    start: int | None = None
    end: int | None = None
    text: str | None = None  # the span's text, or the prompt typed into a TextArea

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    def pixel_point(self) -> tuple[float, float] | None:
        """``(x, y)`` in pixels of the original image, or None without a position or image size."""
        if self.x is None or self.y is None or not self.original_width or not self.original_height:
            return None
        return self.x * self.original_width / 100.0, self.y * self.original_height / 100.0

    def pixel_box(self) -> tuple[float, float, float, float] | None:
        """``(x, y, width, height)`` in pixels of the original image (top-left corner), or None."""
        corner = self.pixel_point()
        if corner is None or self.width is None or self.height is None:
            return None
        assert self.original_width and self.original_height  # pixel_point checked both
        return (*corner, self.width * self.original_width / 100.0, self.height * self.original_height / 100.0)


@dataclass(frozen=True)
class Interaction:
    """The regions of one interactive request, in the order the annotator made them."""

    regions: tuple[Region, ...]

    def of_kind(self, kind: str) -> list[Region]:
        return [r for r in self.regions if r.kind == kind]

    @property
    def points(self) -> list[Region]:
        return self.of_kind("point")

    @property
    def boxes(self) -> list[Region]:
        return self.of_kind("box")

    @property
    def spans(self) -> list[Region]:
        return self.of_kind("span")

    @property
    def prompt(self) -> str | None:
        """The text typed into TextArea prompts (joined by newlines), or None when there is none."""
        texts = [r.text for r in self.of_kind("prompt") if r.text]
        return "\n".join(texts) if texts else None


def interactive_kind(context: object) -> str | None:
    """How Label Studio called: "region" (the annotator made one), "open" (a task opened), None (batch)."""
    if not isinstance(context, dict) or not isinstance(context.get("result"), list):
        return None
    return "region" if context["result"] else "open"


def parse_interaction(context: object) -> Interaction | None:
    """The interaction in ``params.context``, or None when there is none.

    None, a context without ``result`` and an empty ``result`` all mean "no interaction" (Label
    Studio sends the last on opening a task). Anything else must be what Label Studio sends, or
    ``InteractionError`` names the item and field that is not.
    """
    if context is None:
        return None
    if not isinstance(context, dict):
        raise InteractionError(f"params.context must be an object with a 'result' list, got {type(context).__name__}")
    items = context.get("result")
    if not items:
        return None
    if not isinstance(items, list):
        raise InteractionError(f"params.context.result must be a list of regions, got {type(items).__name__}")
    if len(items) > MAX_REGIONS:
        raise InteractionError(f"params.context.result has {len(items)} regions, over {MAX_REGIONS}")
    return Interaction(tuple(_region(item, i) for i, item in enumerate(items)))


def _region(item: object, i: int) -> Region:
    where = f"params.context.result[{i}]"
    if not isinstance(item, dict):
        raise InteractionError(f"{where} must be an object, got {type(item).__name__}")
    kind_type = item.get("type")
    value = item.get("value")
    if not isinstance(kind_type, str) or not isinstance(value, dict):
        raise InteractionError(f"{where} needs a 'type' string and a 'value' object, as Label Studio sends")
    kind_type = kind_type.lower()
    kind = ("point" if kind_type in POINT_TYPES else "box" if kind_type in BOX_TYPES else
            "span" if kind_type in SPAN_TYPES else "prompt" if kind_type in PROMPT_TYPES else
            "shape" if kind_type in SHAPE_TYPES else None)
    if kind is None:
        raise InteractionError(f"{where} has type {kind_type!r:.40}, which is no interactive region "
                               "(keypoint, rectangle, span labels, textarea, ellipse, polygon, brush)")
    fields: dict[str, Any] = {
        "type": kind_type, "kind": kind, "from_name": str(item.get("from_name") or ""),
        "to_name": str(item.get("to_name") or ""), "id": None if item.get("id") is None else str(item["id"]),
        "labels": _labels(value.get(kind_type), where), "positive": item.get("is_positive", True) is not False,
    }
    if kind in ("point", "box", "shape"):
        fields.update(_geometry(item, value, kind, where))
    elif kind == "span":
        fields.update(_span(value, where))
    else:
        fields["text"] = _prompt(value.get("text"), where)
    return Region(**fields)


def _labels(given: object, where: str) -> tuple[str, ...]:
    if given is None:
        return ()
    if not isinstance(given, list) or not all(isinstance(label, str) for label in given):
        raise InteractionError(f"{where}.value's labels must be a list of strings")
    return tuple(given)


def _number(value: object, where: str, name: str, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InteractionError(f"{where}.value.{name} must be a number, got {value!r:.40}")
    return float(value)


def _size(value: object, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1_000_000:
        raise InteractionError(f"{where}.{name} must be a positive number of pixels, got {value!r:.40}")
    return int(value)


def _geometry(item: dict, value: dict, kind: str, where: str) -> dict:
    required = kind in ("point", "box")
    geometry = {
        "x": _number(value.get("x"), where, "x", required),
        "y": _number(value.get("y"), where, "y", required),
        "width": _number(value.get("width"), where, "width", kind == "box"),
        "height": _number(value.get("height"), where, "height", kind == "box"),
        "rotation": _number(value.get("rotation"), where, "rotation", False) or 0.0,
        "original_width": _size(item.get("original_width"), where, "original_width"),
        "original_height": _size(item.get("original_height"), where, "original_height"),
    }
    if kind == "point":
        geometry["width"] = geometry["height"] = None  # a keypoint's width is its drawn size, not an extent
    return geometry


def _offset(value: dict, where: str, name: str) -> int:
    """``value[name]`` as a character offset (an integer >= 0), else ``InteractionError`` saying so."""
    offset = value.get(name)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InteractionError(f"{where}.value.{name} must be a character offset (an integer >= 0), "
                               f"got {offset!r:.40}")
    return offset


def _span(value: dict, where: str) -> dict:
    start, end, text = _offset(value, where, "start"), _offset(value, where, "end"), value.get("text")
    if end < start:
        raise InteractionError(f"{where}.value ends at {end}, before its start {start}")
    if text is not None and not isinstance(text, str):
        raise InteractionError(f"{where}.value.text must be the span's text, got {type(text).__name__}")
    return {"start": start, "end": end, "text": text}


def _prompt(text: object, where: str) -> str:
    """A TextArea's ``value.text``: Label Studio stores a list of strings (one per submitted line)."""
    if isinstance(text, str):
        return text
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return "\n".join(text)
    raise InteractionError(f"{where}.value.text must be the typed text (a string or a list of strings)")


def find_occurrences(text: str, phrase: str, match_case: bool = True) -> list[tuple[int, int]]:
    """Where ``phrase`` occurs in ``text`` as whole words: ``(start, end)`` offsets, in order.

    A match never continues a word on either side (``Acme`` is not found inside ``Acmes``), so
    a proposal never cuts a word; ``match_case=False`` also finds ``ACME`` for ``Acme``.
    """
    if not phrase.strip():
        return []
    before = r"(?<!\w)" if re.match(r"\w", phrase[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", phrase[-1]) else ""
    pattern = re.compile(before + re.escape(phrase) + after, 0 if match_case else re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


T = TypeVar("T")


class TaskCache:
    """What an interactive model computed for a task, kept while the annotator works on it.

    Each click of the annotator is a new request for the same task, so the expensive part (a
    decoded image, features, the model's own predictions) is computed once and looked up after.
    Bounded: at most ``capacity`` entries, the least recently used dropped first. Keys should
    carry whatever the value depends on (task id, the data reference, the model version).
    Thread-safe; two threads missing the same key at once may both compute it.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)
