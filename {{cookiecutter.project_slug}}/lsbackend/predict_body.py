"""Reading a /predict body without building what nobody reads.

Label Studio sends each task with about 20 fields (annotations, predictions, counters, timestamps);
a model reads ``data`` and perhaps ``id``. ``read_predict_body`` builds just those two per task, typed
by msgspec, and keeps each task's raw JSON: a ``Task`` is a real dict that parses the rest of itself
the first time anything else is asked of it, so a model that reads more still sees the whole task.

A body the typed reading does not take as it is (a wrong type, a missing field, NaN, a lone
surrogate, an id beyond 64 bits) gives ``None``; the server then parses it the general way, so every
error and its wording stay those of a full parse.
"""

from __future__ import annotations

import json
from typing import Any, Union

import msgspec
import orjson

_INT_RANGE = range(-(2**63), 2**64)  # orjson, the general path, turns integers outside this into floats


class _TaskHead(msgspec.Struct):
    data: dict
    id: Union[int, str, None, msgspec.UnsetType] = msgspec.UNSET  # noqa: UP007 - msgspec reads this form


class _Heads(msgspec.Struct):
    tasks: list[_TaskHead]


class _Raws(msgspec.Struct):
    tasks: list[msgspec.Raw]
    project: msgspec.Raw = None  # None: absent from the body (JSON null arrives as the Raw text "null")
    label_config: msgspec.Raw = None
    params: msgspec.Raw = None


_HEADS = msgspec.json.Decoder(_Heads)
_RAWS = msgspec.json.Decoder(_Raws)


def _loads(raw: msgspec.Raw | bytes) -> Any:
    """One JSON value the way the general path reads it: orjson, the standard library for what it refuses."""
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        return json.loads(bytes(raw))


class Task(dict):
    """A task dict holding ``id`` and ``data`` up front; any other use parses the remaining fields once.

    Reading ``task["data"]``, ``task["id"]`` or ``task.get("data")`` costs nothing extra; anything
    else (another key, iteration, ``len``, comparison, copying, printing) first fills in the rest, in
    the order Label Studio sent it. Copies and pickles are plain dicts.
    """

    __slots__ = ("_raw",)

    def __init__(self, head: _TaskHead, raw: msgspec.Raw) -> None:
        if head.id is msgspec.UNSET:
            super().__init__(data=head.data)
        else:
            super().__init__(id=head.id, data=head.data)
        self._raw: msgspec.Raw | None = raw

    def _complete(self) -> None:
        if self._raw is None:
            return
        full = _loads(self._raw)
        self._raw = None
        known = dict(dict.items(self))  # what was read or written so far wins over the raw text
        dict.clear(self)
        dict.update(self, full)
        dict.update(self, known)

    def __missing__(self, key: object) -> Any:
        if self._raw is None:
            raise KeyError(key)
        self._complete()
        return dict.__getitem__(self, key)

    def get(self, key: object, default: Any = None) -> Any:
        if self._raw is not None and not dict.__contains__(self, key):
            self._complete()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        if self._raw is not None and not dict.__contains__(self, key):
            self._complete()
        return dict.__contains__(self, key)

    def items(self):
        self._complete()
        return dict.items(self)

    def __reduce_ex__(self, protocol: int):
        return dict, (dict(self.items()),)


def _completing(name: str):
    method = getattr(dict, name)

    def complete_then(self: Task, *args: Any, **kwargs: Any) -> Any:
        self._complete()
        return method(self, *args, **kwargs)

    complete_then.__name__ = name
    return complete_then


for _name in ("__iter__", "__reversed__", "__len__", "__eq__", "__ne__", "__repr__", "__or__", "__ror__",
              "__ior__", "__delitem__", "keys", "values", "copy", "pop", "popitem", "setdefault", "update"):
    setattr(Task, _name, _completing(_name))
Task.__hash__ = None  # a dict is unhashable; setting __eq__ above must not change that


def _surely_within(raw: msgspec.Raw, depth: int, limit: int) -> bool:
    """Whether a value found at ``depth`` nests no deeper than ``limit`` in all, without parsing it.

    Each level needs an opening bracket, so ``depth - 1`` plus the number of brackets bounds it (brackets
    inside strings only make the bound looser); a value that may be deeper goes to the general path.
    """
    text = bytes(raw)
    return depth - 1 + text.count(b"{") + text.count(b"[") <= limit


def read_predict_body(body: bytes, max_depth: int) -> tuple[dict, list[Task]] | None:
    """The body's ``project``/``label_config``/``params`` and its tasks, or ``None`` for the general path.

    ``None`` also for an empty task list, or a body that may nest deeper than ``max_depth``: the
    general path words those errors.
    """
    try:
        raws = _RAWS.decode(body)
        heads = _HEADS.decode(body).tasks
    except (msgspec.DecodeError, RecursionError):  # msgspec.ValidationError is a DecodeError
        return None
    present = {name: raw for name in ("project", "label_config", "params")
               if (raw := getattr(raws, name)) is not None}
    if (not heads or any(type(h.id) is int and h.id not in _INT_RANGE for h in heads)
            or not all(_surely_within(raw, 3, max_depth) for raw in raws.tasks)
            or not all(_surely_within(raw, 2, max_depth) for raw in present.values())):
        return None
    try:
        fields = {name: _loads(raw) for name, raw in present.items()}
    except (ValueError, RecursionError):
        return None
    return fields, [Task(head, raw) for head, raw in zip(heads, raws.tasks, strict=True)]
